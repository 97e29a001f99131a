"""Batches for training and evaluation: seeded, resumable, augmented, normalised.

Randomness is a pure function of (seed, epoch, batch): epoch e is ordered by a permutation
drawn from default_rng([seed, e, 0]) and its batch b is augmented with default_rng([seed, e, 1,
b]). Where a run stands is therefore just (epoch, batch), which `state_dict` records, and a run
resumed from it yields exactly the batches an uninterrupted run would have.
"""

import numpy as np

from .dataset import ImageDataset

PERMUTATION_STREAM, AUGMENTATION_STREAM = 0, 1


class DataLoader:
    """Iterate over a dataset in batches of float32 images and int64 labels.

    Each iteration continues the current epoch from where the last one stopped; when an
    epoch's last batch has been yielded the next iteration starts the next epoch. So
    `for x, y in loader:` once per epoch visits each epoch once, and an interrupted loop (or a
    loader restored with `load_state_dict`) picks up at the following batch.

    Args:
        dataset: images (N, C, H, W) uint8 and labels (N,).
        batch_size: images per batch, B.
        shuffle: a fresh seeded permutation each epoch. Default: False (dataset order).
        drop_last: drop the last batch when it has fewer than B images. Default: False.
        seed: int seeding shuffling and augmentation. Default: one drawn from `rng`, or from
            fresh OS entropy; either way recorded in `state_dict` so a resume repeats it.
        rng: numpy.random.Generator to draw the seed from, instead of `seed`.
        mean, std: (C,) per-channel statistics on the [0, 1] scale (see `channel_stats`);
            x becomes (pixel / 255 - mean) / std. Default: no normalisation, x in [0, 1].
        augment: callable (batch (B, C, H, W) uint8, rng) -> batch, e.g. `Compose([...])`;
            for training only. Default: None.

    Yields:
        (x, y): x (B, C, H', W') float32 (H', W' = H, W unless `augment` crops), y (B,) int64.
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, shuffle=False, drop_last=False,
                 seed=None, rng=None, mean=None, std=None, augment=None):
        if not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if seed is not None and rng is not None:
            raise ValueError("DataLoader: give seed or rng, not both")
        if seed is None:
            source = rng if rng is not None else np.random.default_rng()
            seed = int(source.integers(0, 2**63))
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self.augment = augment
        self.mean, self.std = _checked_stats(mean, std, dataset.images.shape[1])
        self.epoch = 0
        self.position = 0  # batches of `epoch` already yielded

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(len(self.dataset), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """(N,) indices of the images in `epoch`'s order."""
        if not self.shuffle:
            return np.arange(len(self.dataset))
        rng = np.random.default_rng([self.seed, epoch, PERMUTATION_STREAM])
        return rng.permutation(len(self.dataset))

    def batch(self, epoch: int, index: int, order=None) -> tuple[np.ndarray, np.ndarray]:
        """Batch `index` of `epoch`, as iteration yields it (without moving the position)."""
        order = self.epoch_order(epoch) if order is None else order
        chosen = order[index * self.batch_size : (index + 1) * self.batch_size]
        if not self.shuffle:
            chosen = slice(chosen[0], chosen[-1] + 1)  # a view, not a gather
        images, labels = self.dataset.images[chosen], self.dataset.labels[chosen]
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, epoch, AUGMENTATION_STREAM, index])
            images = self.augment(images, rng)
        return self.normalise(images), labels.copy()

    def normalise(self, images: np.ndarray) -> np.ndarray:
        """(B, C, H, W) uint8 -> float32 (pixel / 255 - mean) / std, channel by channel.

        The same float32 operations in the same order as torchvision's ToTensor then
        Normalize, so the numbers agree bit for bit.
        """
        x = images.astype(np.float32)
        x /= np.float32(255)
        if self.mean is not None:
            x -= self.mean
            x /= self.std
        return x

    def __iter__(self):
        if self.position >= len(self):
            self.epoch, self.position = self.epoch + 1, 0
        epoch, order = self.epoch, self.epoch_order(self.epoch)
        while self.epoch == epoch and self.position < len(self):
            index = self.position
            self.position += 1
            yield self.batch(epoch, index, order)
        if self.epoch == epoch and self.position >= len(self):
            self.epoch, self.position = self.epoch + 1, 0

    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch` from its first batch at the next iteration (e.g. to rewind an
        evaluation loader that was left mid-epoch). Not needed for training: iteration moves
        from epoch to epoch by itself, and `load_state_dict` restores a saved position."""
        self.epoch, self.position = int(epoch), 0

    def state_dict(self) -> dict:
        """Where iteration stands, as plain JSON-serialisable values."""
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            "batch_size": self.batch_size,
            "num_samples": len(self.dataset),
            "shuffle": bool(self.shuffle),
            "drop_last": bool(self.drop_last),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state` (from `state_dict`) on the same data and settings.

        Raises:
            ValueError when the dataset size, batch size, shuffle or drop_last differ, since
            the batches could then not be the ones the saved run would have seen.
        """
        for key in ("batch_size", "num_samples", "shuffle", "drop_last"):
            if state[key] != self.state_dict()[key]:
                raise ValueError(
                    f"DataLoader.load_state_dict: saved {key}={state[key]!r} but this loader "
                    f"has {self.state_dict()[key]!r}"
                )
        self.seed, self.epoch, self.position = (
            int(state["seed"]), int(state["epoch"]), int(state["position"]))


def _checked_stats(mean, std, channels: int):
    """(mean, std) as (C, 1, 1) float32 arrays, or (None, None) for no normalisation."""
    if (mean is None) != (std is None):
        raise ValueError("DataLoader: give both mean and std, or neither")
    if mean is None:
        return None, None
    mean = np.asarray(mean, dtype=np.float32).reshape(-1)
    std = np.asarray(std, dtype=np.float32).reshape(-1)
    if mean.shape != (channels,) or std.shape != (channels,):
        raise ValueError(
            f"DataLoader: mean and std must have shape ({channels},), got {mean.shape} and "
            f"{std.shape}"
        )
    if np.any(std <= 0):
        raise ValueError(f"DataLoader: std must be positive, got {std}")
    return mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)
