"""How good are the predictions: the evaluation numbers users expect, from arrays.

Pure functions of class ids, scores and confusion matrices (rows true classes, columns
predictions, as in `cnnlab evaluate`):

    precision_k = C[k, k] / sum_i C[i, k]     (of the images predicted k, the share that are k)
    recall_k    = C[k, k] / sum_j C[k, j]     (of the images of class k, the share found)
    F1_k        = 2 precision_k recall_k / (precision_k + recall_k)
    top-k accuracy = share of images whose true class is among the k highest scores

and the misclassified images grouped by (true, predicted) pair, for a picture of the mistakes.
"""

from typing import NamedTuple

import numpy as np


def _class_ids(op, values, name):
    values = np.asarray(values)
    if values.ndim != 1 or (values.size and values.dtype.kind not in "iu"):
        raise ValueError(f"{op}: expected {name} as (N,) int class ids, got {values.dtype} of "
                         f"shape {values.shape}")
    return values.astype(np.int64)


def confusion_matrix(labels, predictions, num_classes):
    """(K, K) int64 counts: C[i, j] = number of images of class i predicted as j.

    labels, predictions: (N,) int class ids in [0, num_classes).
    """
    labels = _class_ids("confusion_matrix", labels, "labels")
    predictions = _class_ids("confusion_matrix", predictions, "predictions")
    if labels.shape != predictions.shape:
        raise ValueError(f"confusion_matrix: labels {labels.shape} and predictions "
                         f"{predictions.shape} must have the same shape")
    both = np.concatenate([labels, predictions])
    if both.size and (both.min() < 0 or both.max() >= num_classes):
        raise ValueError(f"confusion_matrix: class ids must lie in [0, {num_classes}), found "
                         f"{both.min()}..{both.max()}")
    counts = np.bincount(labels * num_classes + predictions, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


class ClassMetrics(NamedTuple):
    """Per-class precision, recall, F1 (each (K,) float64) and support ((K,) int64, the
    number of images of each class). A ratio whose denominator is 0 is 0.0 (as
    scikit-learn's zero_division=0): precision of a class never predicted, recall of a class
    with no images, F1 when precision and recall are both 0."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray


def _ratio(numerator, denominator):
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)


def precision_recall_f1(confusion):
    """Per-class precision, recall and F1 from a (K, K) confusion matrix (rows true classes).

    Returns:
        ClassMetrics(precision, recall, f1, support); the macro averages are their means.
    """
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"precision_recall_f1: expected a (K, K) confusion matrix, got shape "
                         f"{confusion.shape}")
    correct = np.diag(confusion)
    support = confusion.sum(axis=1)
    precision = _ratio(correct, confusion.sum(axis=0))
    recall = _ratio(correct, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return ClassMetrics(precision, recall, f1, support.astype(np.int64))


def top_k_accuracy(scores, labels, k=5):
    """The share of images whose true class is among their k highest scores.

    Args:
        scores: (N, K) class scores (logits or probabilities: only their order matters).
        labels: (N,) int class ids.
        k: 1 <= k <= K; k = 1 is the accuracy. Default: 5.

    Returns:
        float in [0, 1]: an image counts when fewer than k classes score strictly higher than
        its true class (ties count in its favour); 0.0 for no images.
    """
    scores = np.asarray(scores)
    labels = _class_ids("top_k_accuracy", labels, "labels")
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"top_k_accuracy: expected scores (N, K) and labels (N,), got "
                         f"{scores.shape} and {labels.shape}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= scores.shape[1]:
        raise ValueError(f"top_k_accuracy: k must be an int in [1, {scores.shape[1]}], got {k!r}")
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"top_k_accuracy: labels must lie in [0, {scores.shape[1]})")
    if not len(labels):
        return 0.0
    true_scores = scores[np.arange(len(labels)), labels]
    higher = (scores > true_scores[:, None]).sum(axis=1)
    return float(np.mean(higher < k))


class MistakeGroup(NamedTuple):
    """The images of class `true` predicted as `predicted`, most confident mistake first.

    Attributes:
        true, predicted: the class ids.
        count: how many such images (all of them, whatever `per_pair` kept).
        indices: (M,) int64 image indices, M = min(count, per_pair).
        predicted_probability: (M,) the probability given to the predicted class.
        true_probability: (M,) the probability given to the true class.
    """

    true: int
    predicted: int
    count: int
    indices: np.ndarray
    predicted_probability: np.ndarray
    true_probability: np.ndarray


def misclassified(probabilities, labels, per_pair=8, pairs=None):
    """The misclassified images grouped by (true, predicted) pair: the arrays behind a
    picture of the mistakes (one row per pair, its images with their probabilities).

    Args:
        probabilities: (N, K) class probabilities (softmax outputs); the prediction is the
            most probable class.
        labels: (N,) int true class ids.
        per_pair: most images kept per pair, the most confident mistakes. Default: 8.
        pairs: most pairs returned; Default: None (all).

    Returns:
        list of MistakeGroup, the most frequent pair first (ties: lower true, then predicted
        class id); within a pair, images by decreasing predicted probability (ties: lower
        index).
    """
    probabilities = np.asarray(probabilities)
    labels = _class_ids("misclassified", labels, "labels")
    if probabilities.ndim != 2 or labels.shape != (probabilities.shape[0],):
        raise ValueError(f"misclassified: expected probabilities (N, K) and labels (N,), got "
                         f"{probabilities.shape} and {labels.shape}")
    for name, value in (("per_pair", per_pair), ("pairs", pairs)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"misclassified: {name} must be a positive int, got {value!r}")
    if per_pair is None:
        raise ValueError("misclassified: per_pair must be a positive int, got None")
    classes = probabilities.shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"misclassified: labels must lie in [0, {classes})")
    predictions = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predictions != labels)
    pair_ids = labels[wrong] * classes + predictions[wrong]
    confidence = probabilities[wrong, predictions[wrong]]
    wrong = wrong[np.lexsort((wrong, -confidence, pair_ids))]  # by pair, then confidence
    pair_ids, starts, counts = np.unique(labels[wrong] * classes + predictions[wrong],
                                         return_index=True, return_counts=True)
    order = np.lexsort((pair_ids, -counts))[:pairs]
    groups = []
    for pair, start, count in zip(pair_ids[order], starts[order], counts[order], strict=True):
        true, predicted = divmod(int(pair), classes)
        indices = wrong[start : start + min(int(count), per_pair)]
        groups.append(MistakeGroup(true, predicted, int(count), indices,
                                   probabilities[indices, predicted],
                                   probabilities[indices, true]))
    return groups
