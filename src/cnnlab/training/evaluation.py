"""Loss and accuracy: the loss a model trains with, and its metrics on a dataset.

    loss = loss_function("cross_entropy")
    result = evaluate(model, loader, loss, classes)   # loss, accuracy, per class, confusion
"""

import numpy as np
from tqdm import tqdm

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


def evaluate(model, loader: DataLoader, loss, classes, progress=False, description="eval"):
    """Loss and accuracy of `model` on every batch of `loader` (in order, no augmentation).

    Returns:
        dict with loss (mean per image), accuracy, per_class_accuracy (class name -> accuracy,
        None for a class with no images), confusion_matrix (K x K lists, rows true classes,
        columns predictions) and count.
    """
    count = len(classes)
    confusion = np.zeros((count, count), dtype=np.int64)
    loss_sum, was_training = 0.0, model.training
    model.eval()
    try:
        with no_grad():
            for index in tqdm(range(len(loader)), desc=description, leave=False,
                              disable=not progress):
                x, y = loader.batch(0, index)
                scores = model(Tensor(x))
                loss_sum += float(loss(scores, y, reduction="sum").data)
                np.add.at(confusion, (y, scores.data.argmax(axis=1)), 1)
    finally:
        model.train(was_training)
    return metrics_from_confusion(confusion, loss_sum, classes)


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
