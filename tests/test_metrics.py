"""cnnlab.metrics against plain loops over the predictions, written from the definitions."""

import numpy as np
import pytest

from cnnlab.metrics import (
    confusion_matrix,
    misclassified,
    precision_recall_f1,
    top_k_accuracy,
)


def _predictions(count=300, classes=6, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, count)
    scores = rng.standard_normal((count, classes)) + 2.0 * np.eye(classes)[labels]
    return scores, labels


def test_confusion_matrix_counts_each_true_and_predicted_pair():
    scores, labels = _predictions()
    predictions = scores.argmax(axis=1)
    expected = np.zeros((6, 6), dtype=np.int64)
    for true, predicted in zip(labels, predictions, strict=True):
        expected[true, predicted] += 1
    np.testing.assert_array_equal(confusion_matrix(labels, predictions, 6), expected)


def test_precision_recall_f1_from_the_definitions():
    scores, labels = _predictions()
    predictions = scores.argmax(axis=1)
    metrics = precision_recall_f1(confusion_matrix(labels, predictions, 6))
    for k in range(6):
        true_positive = sum(1 for t, p in zip(labels, predictions, strict=True) if t == k == p)
        predicted_k = sum(1 for p in predictions if p == k)
        actual_k = sum(1 for t in labels if t == k)
        precision, recall = true_positive / predicted_k, true_positive / actual_k
        assert metrics.precision[k] == pytest.approx(precision)
        assert metrics.recall[k] == pytest.approx(recall)
        assert metrics.f1[k] == pytest.approx(2 * precision * recall / (precision + recall))
        assert metrics.support[k] == actual_k


def test_a_class_never_predicted_or_never_present_scores_zero_not_nan():
    confusion = np.array([[3, 1, 0], [2, 0, 0], [0, 0, 0]])  # class 1 never right, 2 absent
    metrics = precision_recall_f1(confusion)
    np.testing.assert_allclose(metrics.precision, [0.6, 0.0, 0.0])
    np.testing.assert_allclose(metrics.recall, [0.75, 0.0, 0.0])
    np.testing.assert_allclose(metrics.f1, [2 * 0.6 * 0.75 / 1.35, 0.0, 0.0])
    np.testing.assert_array_equal(metrics.support, [4, 2, 0])


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_top_k_accuracy_counts_the_true_class_among_the_k_highest(k):
    scores, labels = _predictions(seed=k)
    hits = 0
    for row, label in zip(scores, labels, strict=True):
        ranked = sorted(range(6), key=lambda c: -row[c])
        hits += label in ranked[:k]
    assert top_k_accuracy(scores, labels, k) == pytest.approx(hits / len(labels))
    if k == 1:
        assert top_k_accuracy(scores, labels, 1) == np.mean(scores.argmax(axis=1) == labels)


def test_top_k_accuracy_counts_ties_for_the_true_class():
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    assert top_k_accuracy(scores, np.array([1, 0]), k=1) == 0.5  # row 0: tie at the top
    assert top_k_accuracy(scores, np.array([1, 0]), k=2) == 0.5  # row 1: two classes above


def test_misclassified_groups_by_pair_most_frequent_first_most_confident_first():
    rng = np.random.default_rng(3)
    probabilities = rng.dirichlet(np.ones(4) * 0.5, size=400)
    labels = rng.integers(0, 4, 400)
    groups = misclassified(probabilities, labels, per_pair=3)
    predictions = probabilities.argmax(axis=1)
    expected = {}
    for index in range(400):
        if predictions[index] != labels[index]:
            expected.setdefault((labels[index], predictions[index]), []).append(index)
    assert len(groups) == len(expected) == 12
    counts = [group.count for group in groups]
    assert counts == sorted(counts, reverse=True)
    for group in groups:
        indices = expected[(group.true, group.predicted)]
        assert group.count == len(indices)
        best = sorted(indices, key=lambda i: (-probabilities[i, group.predicted], i))[:3]
        assert group.indices.tolist() == best
        np.testing.assert_array_equal(group.predicted_probability,
                                      probabilities[best, group.predicted])
        np.testing.assert_array_equal(group.true_probability, probabilities[best, group.true])
    assert [(g.true, g.predicted) for g in misclassified(probabilities, labels, pairs=2)] == [
        (g.true, g.predicted) for g in groups[:2]]


def test_bad_input_is_a_value_error_naming_the_function():
    with pytest.raises(ValueError, match=r"top_k_accuracy: k must be an int in \[1, 3\]"):
        top_k_accuracy(np.zeros((2, 3)), np.array([0, 1]), k=4)
    with pytest.raises(ValueError, match=r"confusion_matrix: class ids must lie in \[0, 3\)"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match=r"precision_recall_f1: expected a \(K, K\)"):
        precision_recall_f1(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"misclassified: per_pair must be a positive int"):
        misclassified(np.eye(3), np.array([0, 1, 2]), per_pair=0)
    assert misclassified(np.eye(3), np.array([0, 1, 2])) == []
