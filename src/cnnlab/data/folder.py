"""Folders of image files, read through Pillow: `root/<class>/<image>`, as torchvision's
ImageFolder reads them.

Classes are the sub-folder names, sorted; the images of a class are its files, sorted by name.
Every image is converted to one size and channel count (given, or taken from the first image
read). A file that is not an image or cannot be decoded is never dropped silently: it is listed
in `ImageDataset.skipped` and announced with a `DatasetWarning`, or with `strict=True` it is an
error.
"""

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.errors import DatasetError

from .dataset import ImageDataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".gif", ".tif", ".tiff",
                    ".webp")
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
MODES = {1: "L", 3: "RGB"}
TEST_FRACTION = 0.2
TEST_SEED = 0


class DatasetWarning(UserWarning):
    """Files of an image folder were skipped (the warning gives their count and names)."""


def _pair(size) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {size!r}")
    return int(height), int(width)


def _open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except Exception as error:  # a decoder meeting a damaged file may raise nearly anything
        raise DatasetError(f"{path}: cannot read as an image: {error}") from error


def _to_array(image: Image.Image, size: tuple[int, int], channels: int) -> np.ndarray:
    """A Pillow image -> (C, H, W) uint8, converted to the mode and resized (bilinear)."""
    if channels not in MODES:
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    image = image.convert(MODES[channels])
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def load_image(path, size=None, channels=None) -> np.ndarray:
    """One image file for prediction.

    Args:
        path: any format Pillow reads, or a binary file object holding one.
        size: (H, W) or an int for square; Default: the file's own size.
        channels: 1 (grey, Pillow mode "L") or 3 ("RGB"); Default: 1 for grey files, else 3.

    Returns:
        (C, H, W) uint8.

    Raises:
        DatasetError naming the file when it cannot be read.
    """
    image = _open_image(path if hasattr(path, "read") else Path(path))
    size = _pair(size) if size is not None else (image.height, image.width)
    channels = channels if channels is not None else (1 if image.mode in GREY_MODES else 3)
    return _to_array(image, size, channels)


def _class_files(root: Path) -> tuple[list[str], list[tuple[Path, int]], list[str]]:
    """Sorted class names, (file, label) pairs, and entries that are not image files."""
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
    if not classes:
        raise DatasetError(f"{root}: no class folders (expected {root}/<class>/<image files>)")
    files, odd = [], []
    for label, name in enumerate(classes):
        for file in sorted((root / name).iterdir()):
            if file.is_file() and file.suffix.lower() in IMAGE_EXTENSIONS:
                files.append((file, label))
            else:
                odd.append(f"{file}: not an image file")
    odd.extend(f"{entry}: not a class folder" for entry in sorted(root.iterdir())
               if not entry.is_dir())
    return classes, files, odd


def load_image_folder(root, image_size=None, channels=None, strict=False,
                      classes=None) -> ImageDataset:
    """Every image under `root/<class>/`, converted to one size and channel count.

    Args:
        root: folder with one sub-folder per class.
        image_size: (H, W) or int; Default: the size of the first image read.
        channels: 1 or 3; Default: 1 if the first image read is grey, else 3.
        strict: raise DatasetError on the first file that is skipped, instead of listing it.
        classes: the class list to label with (a test folder uses its train folder's);
            Default: the sorted sub-folder names.

    Returns:
        ImageDataset: images (N, C, H, W) uint8, labels (N,) int64; skipped files listed in
        `skipped` as "path: reason".
    """
    root = Path(root)
    found, files, skipped = _class_files(root)
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DatasetError(f"{root}: class folders {unknown} are not among {classes}")
    labels_of = {name: label for label, name in enumerate(classes)}
    images, labels = None, np.empty(len(files), dtype=np.int64)
    count = 0
    for file, label in files:
        try:
            image = _open_image(file)
        except DatasetError as error:
            skipped.append(f"{file}: {error.__cause__ or error}")
            continue
        if images is None:
            size = _pair(image_size) if image_size is not None else (image.height, image.width)
            if channels is None:
                channels = 1 if image.mode in GREY_MODES else 3
            images = np.empty((len(files), channels, *size), dtype=np.uint8)
        images[count] = _to_array(image, size, channels)
        labels[count] = labels_of[found[label]]
        count += 1
    if skipped and strict:
        raise DatasetError(f"{skipped[0]} (and {len(skipped) - 1} more skipped files)"
                           if len(skipped) > 1 else skipped[0])
    if skipped:
        shown = "; ".join(skipped[:5]) + ("; ..." if len(skipped) > 5 else "")
        warnings.warn(f"{root}: skipped {len(skipped)} file(s): {shown}", DatasetWarning,
                      stacklevel=2)
    if count == 0:
        raise DatasetError(f"{root}: no readable images")
    return ImageDataset(images[:count], labels[:count], list(classes), skipped)


def split_held_out(dataset: ImageDataset) -> tuple[ImageDataset, ImageDataset]:
    """A fixed test set for a folder without train/ and test/: TEST_FRACTION of each class
    (rounded), drawn with seed TEST_SEED, so it is the same on every run.

    Returns:
        (train, test), each in the folder's order.
    """
    rng = np.random.default_rng(TEST_SEED)
    is_test = np.zeros(len(dataset), dtype=bool)
    for label in range(len(dataset.classes)):
        members = np.flatnonzero(dataset.labels == label)
        chosen = rng.permutation(members)[: int(round(TEST_FRACTION * len(members)))]
        is_test[chosen] = True
    if not is_test.any() or is_test.all():
        raise DatasetError(
            f"too few images ({len(dataset)}) to hold out a test set of {TEST_FRACTION:.0%} "
            "per class; give the folder train/ and test/ sub-folders"
        )
    train, test = dataset.subset(~is_test), dataset.subset(is_test)
    train.skipped = test.skipped = dataset.skipped
    return train, test


def load_folder_dataset(root, image_size=None, channels=None, strict=False):
    """(train, test) from `root`: `root/train/<class>/` and `root/test/<class>/` when both
    exist (test labelled with train's classes), otherwise `root/<class>/` with a held-out
    test set (see `split_held_out`)."""
    root = Path(root)
    if (root / "train").is_dir() and (root / "test").is_dir():
        train = load_image_folder(root / "train", image_size, channels, strict)
        size, channels = train.images.shape[2:], train.images.shape[1]
        test = load_image_folder(root / "test", size, channels, strict, classes=train.classes)
        return train, test
    return split_held_out(load_image_folder(root, image_size, channels, strict))
