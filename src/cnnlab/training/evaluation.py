"""Loss and accuracy: the loss a model trains with, and its metrics on a dataset.

    loss = loss_function("cross_entropy")
    result = evaluate(model, loader, loss, classes)   # loss, accuracy, per class, confusion
    result = evaluate(model, loader, loss, classes, top_k=(1, 3, 5))   # + precision, recall,
                                                                       # F1, top-k accuracy
"""

import numpy as np
from tqdm import tqdm

from cnnlab import metrics
from cnnlab.data import DataLoader
from cnnlab.nn import functional as F
from cnnlab.tensor import Tensor, no_grad


def loss_function(name: str, margin: float = 1.0, label_smoothing: float = 0.0):
    """loss(scores (N, K) Tensor, labels (N,), reduction) -> Tensor, by name; `margin` is the
    hinge's, `label_smoothing` the cross-entropy's."""
    if name == "hinge":
        return lambda scores, labels, reduction="mean": F.multiclass_hinge_loss(
            scores, labels, margin=margin, reduction=reduction)
    return lambda scores, labels, reduction="mean": F.cross_entropy(
        scores, labels, reduction, label_smoothing)


def evaluate(model, loader: DataLoader, loss, classes, progress=False, description="eval",
             top_k=None):
    """Loss and accuracy of `model` on every batch of `loader` (in order, no augmentation).

    Args:
        top_k: ks for top-k accuracy, each in [1, K]; with them the result also holds
            `per_class`, `macro` and `top_k_accuracy` (see `classification_report`).
            Default: None (neither).

    Returns:
        dict with loss (mean per image), accuracy, per_class_accuracy (class name -> accuracy,
        None for a class with no images), confusion_matrix (K x K lists, rows true classes,
        columns predictions) and count.
    """
    count = len(classes)
    confusion = np.zeros((count, count), dtype=np.int64)
    loss_sum, was_training = 0.0, model.training
    all_scores, all_labels = [], []
    model.eval()
    try:
        with no_grad():
            for index in tqdm(range(len(loader)), desc=description, leave=False,
                              disable=not progress):
                x, y = loader.batch(0, index)
                scores = model(Tensor(x))
                loss_sum += float(loss(scores, y, reduction="sum").data)
                np.add.at(confusion, (y, scores.data.argmax(axis=1)), 1)
                if top_k is not None:
                    all_scores.append(scores.data)
                    all_labels.append(y)
    finally:
        model.train(was_training)
    result = metrics_from_confusion(confusion, loss_sum, classes)
    if top_k is not None:
        scores = np.concatenate(all_scores) if all_scores else np.zeros((0, count))
        labels = np.concatenate(all_labels) if all_labels else np.zeros(0, dtype=np.int64)
        result.update(classification_report(confusion, scores, labels, classes, top_k))
    return result


def classification_report(confusion, scores, labels, classes, top_k=(1, 3, 5)) -> dict:
    """Per-class precision, recall, F1 and support, and top-k accuracies (cnnlab.metrics).

    Args:
        confusion: (K, K) counts, rows true classes; scores: (N, K); labels: (N,) class ids.
        top_k: the ks, each in [1, K].

    Returns:
        {"per_class": {class name: {"precision", "recall", "f1", "support"}},
         "macro": {"precision", "recall", "f1"} (the means over the classes),
         "top_k_accuracy": {"k": share of images whose class is among their k best scores}}
        (recall is the per-class accuracy; a ratio with nothing to divide by is 0.0).
    """
    report = metrics.precision_recall_f1(confusion)
    per_class = {
        name: {"precision": float(report.precision[k]), "recall": float(report.recall[k]),
               "f1": float(report.f1[k]), "support": int(report.support[k])}
        for k, name in enumerate(classes)
    }
    macro = {"precision": float(report.precision.mean()), "recall": float(report.recall.mean()),
             "f1": float(report.f1.mean())}
    accuracies = {str(k): metrics.top_k_accuracy(scores, labels, k) for k in top_k}
    return {"per_class": per_class, "macro": macro, "top_k_accuracy": accuracies}


def metrics_from_confusion(confusion: np.ndarray, loss_sum: float, classes) -> dict:
    """`evaluate`'s dict from a confusion matrix (K, K) and the summed loss."""
    total = int(confusion.sum())
    support = confusion.sum(axis=1)
    per_class = {
        name: (float(confusion[k, k] / support[k]) if support[k] else None)
        for k, name in enumerate(classes)
    }
    return {
        "loss": loss_sum / max(total, 1),
        "accuracy": float(np.trace(confusion) / max(total, 1)),
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
        "count": total,
    }
