"""`load_dataset`: a dataset name to (train, test), found on disk or downloaded.

Where the built-in datasets are looked for, in order (the first that holds any of the files
is used, and must hold all of them):

1. `data_dir` (`--data-dir`), when given, and nowhere else: DIR/<name>/ or DIR itself;
2. `$CNNLAB_DATA`: the same two places under it;
3. the system package's folder (Fashion-MNIST: /usr/share/datasets/fashion-mnist,
   Debian package dataset-fashion-mnist);
4. the user's cache: `$XDG_CACHE_HOME/cnnlab/<name>/`, by default ~/.cache/cnnlab/<name>/.

With `download=True` a dataset found nowhere is fetched into DIR/<name>/ (with `data_dir`) or
the cache, and a partial copy in that folder is completed.
"""

import os
from pathlib import Path

from cnnlab.errors import DatasetError

from .cifar import find_cifar, load_cifar10
from .dataset import ImageDataset
from .download import download_dataset
from .folder import load_folder_dataset
from .idx import load_idx_pair
from .registry import DATASETS, IDX_STEMS, DatasetInfo

FOLDER_PREFIX = "folder:"


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/cnnlab`, or ~/.cache/cnnlab."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnlab"


def _idx_files(place: Path) -> dict[str, Path | None]:
    """Each IDX file of a dataset in `place`, gzipped (preferred) or raw; None where absent."""
    found = {}
    for role, stem in IDX_STEMS.items():
        candidates = [place / f"{stem}.gz", place / stem]
        found[role] = next((file for file in candidates if file.is_file()), None)
    return found


def _holds(info: DatasetInfo, place: Path) -> bool:
    """Whether `place` holds any file of the dataset (it is then the copy to use)."""
    if info.name == "cifar10":
        return find_cifar(place) is not None
    return place.is_dir() and any(_idx_files(place).values())


def _candidates(info: DatasetInfo, data_dir) -> list[Path]:
    if data_dir is not None:
        return [Path(data_dir) / info.name, Path(data_dir)]
    places = []
    if os.environ.get("CNNLAB_DATA"):
        places += [Path(os.environ["CNNLAB_DATA"]) / info.name, Path(os.environ["CNNLAB_DATA"])]
    places += [Path(folder) for folder in info.system_dirs]
    places.append(cache_dir() / info.name)
    return places


def locate(info: DatasetInfo, data_dir=None, download=False, mirror=None) -> Path:
    """The folder (or CIFAR-10 archive) to read `info`'s dataset from; see the module docstring.

    Raises:
        DatasetError listing the places looked in, when the dataset is nowhere and
        `download` is False.
    """
    places = _candidates(info, data_dir)
    for place in places:
        if _holds(info, place):
            if download and info.name != "cifar10" and not all(_idx_files(place).values()):
                download_dataset(info, place, mirror)
            return find_cifar(place) if info.name == "cifar10" else place
    if download:
        target = places[0] if data_dir is not None else cache_dir() / info.name
        download_dataset(info, target, mirror)
        return find_cifar(target) if info.name == "cifar10" else target
    looked = ", ".join(str(place) for place in places)
    raise DatasetError(
        f"{info.name} not found (looked in {looked}); "
        "point --data-dir at a copy, or pass --download to fetch the official files"
    )


def _load_idx(info: DatasetInfo, place: Path) -> tuple[ImageDataset, ImageDataset]:
    files = _idx_files(place)
    missing = [f"{IDX_STEMS[role]}[.gz]" for role, file in files.items() if file is None]
    if missing:
        raise DatasetError(f"{place}: incomplete {info.name}: missing {', '.join(missing)}")
    train = load_idx_pair(files["train_images"], files["train_labels"], info.classes)
    test = load_idx_pair(files["test_images"], files["test_labels"], info.classes)
    return train, test


def load_dataset(spec: str, data_dir=None, download=False, strict=False, image_size=None,
                 channels=None, mirror=None) -> tuple[ImageDataset, ImageDataset]:
    """Load a dataset's training and test sets.

    Args:
        spec: "fashion-mnist", "mnist", "cifar10", or "folder:PATH" (see `load_folder_dataset`).
        data_dir: the only place to look for a built-in dataset (DIR/<name>/ or DIR; for
            CIFAR-10 also the .tar.gz itself); Default: the lookup order of this module.
        download: fetch a built-in dataset's official files when they are not found, checked
            against the published MD5 sums.
        strict: for folders, an unreadable or odd file is an error instead of being listed in
            `skipped`.
        image_size: for folders, (H, W) or int; Default: the first image's size.
        channels: for folders, 1 or 3; Default: from the first image.
        mirror: base URL replacing the official one for downloads; Default: `$CNNLAB_MIRROR`.

    Returns:
        (train, test): ImageDatasets with images (N, C, H, W) uint8, e.g. (60000, 1, 28, 28)
        and (10000, 1, 28, 28) for Fashion-MNIST.

    Raises:
        DatasetError naming the file and the problem; ValueError for an unknown spec.
    """
    if spec.startswith(FOLDER_PREFIX):
        if download:
            raise ValueError("download applies to the built-in datasets, not to folders")
        return load_folder_dataset(spec[len(FOLDER_PREFIX):], image_size, channels, strict)
    if spec not in DATASETS:
        known = ", ".join([*DATASETS, FOLDER_PREFIX + "PATH"])
        raise ValueError(f"unknown dataset {spec!r}; expected one of {known}")
    if image_size is not None or channels is not None:
        raise ValueError(f"image_size and channels apply to folder datasets, not to {spec}")
    info = DATASETS[spec]
    place = locate(info, data_dir, download, mirror)
    if info.name == "cifar10":
        return load_cifar10(place)
    return _load_idx(info, place)
