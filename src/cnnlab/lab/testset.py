"""A run's test images, for picking an input: by class, the misclassified ones, or the images
of one cell of the confusion matrix.

    tests = TestImages(models)
    tests.page("cnn", label=3, misclassified=True, offset=0, limit=48)
    tests.confusion("cnn")               # the run's test confusion matrix (or last validation)
    tests.image("cnn", 17)               # (C, H, W) uint8

The test set is the run's own (cnnlab.training.trained.load_split, from the run's dataset
and --data-dir); the predicted classes are predict_classes of the lab's model of the run
(the final one of a finished run, whose test confusion matrix they add up to).
"""

import threading

import numpy as np

from cnnlab.errors import DatasetError
from cnnlab.lab.encoding import encode_pixels
from cnnlab.lab.errors import BadRequest, NotFound
from cnnlab.training.trained import load_split, predict_classes

MAX_PAGE = 200


class TestImages:
    """The test sets of a Models' runs, loaded once per dataset, and each model's predicted
    classes on them, computed once per checkpoint."""

    def __init__(self, models):
        self.models = models
        self._sets, self._predicted = {}, {}
        self.lock = threading.Lock()

    def dataset(self, name: str):
        """The run's test set (an ImageDataset), NotFound when it cannot be loaded."""
        metadata = self.models.load(name).trained.metadata
        training = metadata.get("training") or {}
        key = (metadata["dataset"], training.get("data_dir"), tuple(
            metadata["preprocessing"]["input_size"]), metadata["preprocessing"]["channels"])
        with self.lock:
            if key not in self._sets:
                try:
                    self._sets[key] = load_split(metadata, metadata["dataset"],
                                                    data_dir=training.get("data_dir"))
                except (DatasetError, ValueError) as error:
                    raise NotFound(f"{name}: the test images cannot be loaded: {error}") from None
            return self._sets[key]

    def predicted(self, name: str) -> np.ndarray:
        """(N,) the model's class for every test image."""
        loaded = self.models.load(name)
        dataset = self.dataset(name)
        with self.models.lock:
            if self._predicted.get(name, (None,))[0] is not loaded.trained:
                self._predicted[name] = (loaded.trained, predict_classes(loaded.trained, dataset))
            return self._predicted[name][1]

    def image(self, name: str, index: int):
        """Test image `index`, (C, H, W) uint8, and its label."""
        dataset = self.dataset(name)
        if not 0 <= index < len(dataset):
            raise BadRequest(f"test_index must lie in 0..{len(dataset) - 1}, got {index}")
        return dataset.images[index], int(dataset.labels[index])

    def page(self, name: str, label=None, predicted=None, misclassified=False, offset=0,
             limit=48) -> dict:
        """Test images with `label` (a class index), the model `predicted` class, and only the
        misclassified ones, from `offset`, at most `limit`: their indices, labels, predicted
        classes (when a filter needs them) and pixels (n, C, H, W) uint8; with the total
        count that match."""
        dataset = self.dataset(name)
        classes = list(dataset.classes)
        for flag, value in (("label", label), ("predicted", predicted)):
            if value is not None and not 0 <= value < len(classes):
                raise BadRequest(f"{flag} must lie in 0..{len(classes) - 1}, got {value}")
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise BadRequest(f"limit must lie in 1..{MAX_PAGE} and offset be at least 0, got "
                             f"limit {limit} and offset {offset}")
        keep = np.ones(len(dataset), dtype=bool)
        if label is not None:
            keep &= dataset.labels == label
        guesses = None
        if predicted is not None or misclassified:
            guesses = self.predicted(name)
            if predicted is not None:
                keep &= guesses == predicted
            if misclassified:
                keep &= guesses != dataset.labels
        indices = np.flatnonzero(keep)
        chosen = indices[offset:offset + limit]
        return {
            "name": name, "classes": classes, "total": int(len(indices)), "offset": offset,
            "indices": chosen.tolist(), "labels": dataset.labels[chosen].tolist(),
            "predicted": None if guesses is None else guesses[chosen].tolist(),
            "images": encode_pixels(dataset.images[chosen]),
        }

    def confusion(self, name: str) -> dict:
        """The run's confusion matrix: the test set's when the run has finished (its cells'
        images are `page(label=i, predicted=j)`), else the last epoch's validation one."""
        loaded = self.models.load(name)
        metadata = loaded.trained.metadata
        matrix = (metadata.get("metrics") or {}).get("test_confusion_matrix")
        split = "test"
        if matrix is None:
            history = self.models.catalogue.metrics(name)
            matrix = history[-1]["val_confusion_matrix"] if history else None
            split = "validation"
        return {"name": name, "classes": metadata["classes"], "split": split,
                "matrix": matrix}
