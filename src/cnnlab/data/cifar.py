"""CIFAR-10 from its official distributions, as a folder or as the .tar.gz archive itself.

Binary version (cifar-10-batches-bin): data_batch_1.bin .. data_batch_5.bin and test_batch.bin,
each a run of 3073-byte records: one label byte, then 3072 pixel bytes (1024 red, 1024 green,
1024 blue, each 32 rows of 32).

Python version (cifar-10-batches-py): data_batch_1 .. data_batch_5 and test_batch, each a
Python 2 pickle of a dict {b"batch_label", b"labels": list of int, b"data": (n, 3072) uint8
array in the same pixel order, b"filenames"}. They are read with `SafeUnpickler`, which builds
only those plain types and refuses everything else, so a crafted file cannot run code.

An archive is read member by member in one pass and never extracted to disk.
"""

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from cnnlab.errors import DatasetError

from .dataset import ImageDataset
from .registry import CIFAR10_CLASSES

RECORD_BYTES = 1 + 3 * 32 * 32
IMAGE_SHAPE = (3, 32, 32)
TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))
TEST_BATCH = "test_batch"
FOLDERS = {"bin": "cifar-10-batches-bin", "py": "cifar-10-batches-py"}
ARCHIVES = {"py": "cifar-10-python.tar.gz", "bin": "cifar-10-binary.tar.gz"}
MAX_MEMBER_BYTES = 256 << 20  # an official batch is about 31 MB


def _latin1_encode(text, encoding="latin1"):
    """How Python 3 pickles bytes at protocol 2 (`_codecs.encode(text, "latin1")`), and no more."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _reconstruct(subtype, shape, dtype_code):
    """numpy's array-unpickling entry point, limited to plain ndarrays."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"refused array subtype {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _dtype(spec, align=False, copy=False):
    """numpy's dtype constructor as pickles call it, refusing Python-object dtypes."""
    dtype = np.dtype(spec, align=bool(align), copy=bool(copy))
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"refused dtype {dtype} holding Python objects")
    return dtype


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds dicts, lists, tuples, str, bytes, numbers and plain numeric
    NumPy arrays, and nothing else.

    The only globals it resolves are numpy's array reconstruction (`_reconstruct`, `ndarray`,
    `dtype`), each replaced by a checked stand-in above, and `_codecs.encode` restricted to
    latin-1. Any other global (os.system, builtins.eval, ...) raises UnpicklingError before
    anything is called.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _dtype,
        ("_codecs", "encode"): _latin1_encode,
    }

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


def safe_unpickle(data: bytes, source: str):
    """Unpickle `data` with `SafeUnpickler` (Python 2 strings read as bytes)."""
    try:
        return SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as error:  # the unpickler can raise almost anything on a damaged file
        raise DatasetError(f"{source}: not a CIFAR-10 python batch: {error}") from error


def parse_binary_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch -> images (n, 3, 32, 32) uint8, labels (n,) int64."""
    if len(data) == 0 or len(data) % RECORD_BYTES:
        raise DatasetError(
            f"{source}: wrong record size: {len(data)} bytes is not a whole number of "
            f"{RECORD_BYTES}-byte records"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    return _checked(records[:, 1:].reshape(-1, *IMAGE_SHAPE), labels, source)


def parse_python_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> images (n, 3, 32, 32) uint8, labels (n,) int64."""
    batch = safe_unpickle(data, source)
    if not isinstance(batch, dict):
        raise DatasetError(f"{source}: expected a dict, found {type(batch).__name__}")
    batch = {key.decode("latin1") if isinstance(key, bytes) else key: v for key, v in batch.items()}
    pixels, labels = batch.get("data"), batch.get("labels")
    if not isinstance(pixels, np.ndarray) or labels is None:
        raise DatasetError(f"{source}: expected entries b'data' (an array) and b'labels'")
    if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != RECORD_BYTES - 1:
        raise DatasetError(
            f"{source}: wrong record size: data is {pixels.dtype} of shape {pixels.shape}, "
            f"expected uint8 of shape (n, {RECORD_BYTES - 1})"
        )
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as error:
        raise DatasetError(f"{source}: labels are not integers: {error}") from error
    if labels.shape != (len(pixels),):
        raise DatasetError(
            f"{source}: count mismatch: {labels.size} labels for {len(pixels)} images"
        )
    return _checked(pixels.reshape(-1, *IMAGE_SHAPE), labels, source)


def _checked(images, labels, source):
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        bad = int(np.argmax((labels < 0) | (labels >= len(CIFAR10_CLASSES))))
        raise DatasetError(
            f"{source}: label {labels[bad]} at index {bad} is out of range "
            f"0..{len(CIFAR10_CLASSES) - 1}"
        )
    return images, labels


PARSERS = {"bin": (parse_binary_batch, ".bin"), "py": (parse_python_batch, "")}


def find_cifar(place: Path) -> Path | None:
    """Where CIFAR-10 lies in `place` (a batches folder or an archive), or None.

    `place` may be the archive itself, a cifar-10-batches-* folder, or a folder holding either.
    """
    if place.is_file() or _folder_version(place):
        return place
    for name in (FOLDERS["bin"], FOLDERS["py"], ARCHIVES["py"], ARCHIVES["bin"]):
        if (place / name).exists():
            return place / name
    return None


def _folder_version(folder: Path) -> str | None:
    """The version in `folder`, "bin" or "py", told by its first training batch; else None."""
    if (folder / f"{TRAIN_BATCHES[0]}.bin").is_file():
        return "bin"
    if (folder / TRAIN_BATCHES[0]).is_file():
        return "py"
    return None


def load_cifar10(path) -> tuple[ImageDataset, ImageDataset]:
    """CIFAR-10 (train: 50000, test: 10000 images of (3, 32, 32)) from a folder or archive.

    Args:
        path: a cifar-10-batches-bin or cifar-10-batches-py folder, a folder containing one, or
            cifar-10-binary.tar.gz / cifar-10-python.tar.gz.

    Raises:
        DatasetError naming the file: missing batch, wrong record size, label out of range,
        refused or damaged pickle, damaged archive.
    """
    path = Path(path)
    found = find_cifar(path)
    if found is None:
        raise DatasetError(
            f"{path}: no CIFAR-10 here (expected {FOLDERS['bin']}/, {FOLDERS['py']}/, "
            f"{ARCHIVES['bin']} or {ARCHIVES['py']})"
        )
    if found.is_file():
        batches = _read_archive(found)
    else:
        version = _folder_version(found) or ("py" if found.name == FOLDERS["py"] else "bin")
        batches = _read_folder(found, version)
    train = [batches[name] for name in TRAIN_BATCHES]
    test_images, test_labels = batches[TEST_BATCH]
    classes = list(CIFAR10_CLASSES)
    return (
        ImageDataset(
            np.concatenate([images for images, _ in train]),
            np.concatenate([labels for _, labels in train]),
            classes,
        ),
        ImageDataset(np.ascontiguousarray(test_images), test_labels, classes),
    )


def _read_folder(folder: Path, version: str) -> dict:
    parse, suffix = PARSERS[version]
    batches = {}
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        file = folder / f"{name}{suffix}"
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            raise DatasetError(f"{file}: missing CIFAR-10 batch") from None
        except OSError as error:
            raise DatasetError(f"{file}: cannot read: {error}") from error
        batches[name] = parse(data, str(file))
    return batches


def _read_archive(archive: Path) -> dict:
    """Parse every batch of a CIFAR-10 archive in one forward pass, extracting nothing."""
    batches = {}
    wanted = {}
    for version in ("bin", "py"):
        _, suffix = PARSERS[version]
        for name in (*TRAIN_BATCHES, TEST_BATCH):
            wanted[f"{FOLDERS[version]}/{name}{suffix}"] = (name, version)
    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            for member in tar:
                if member.name not in wanted or not member.isfile():
                    continue
                source = f"{archive}:{member.name}"
                if member.size > MAX_MEMBER_BYTES:
                    raise DatasetError(f"{source}: {member.size} bytes, too large for a batch")
                name, version = wanted[member.name]
                data = tar.extractfile(member).read()
                batches[name] = PARSERS[version][0](data, source)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DatasetError(f"{archive}: damaged or not a .tar.gz archive: {error}") from error
    missing = [name for name in (*TRAIN_BATCHES, TEST_BATCH) if name not in batches]
    if missing:
        raise DatasetError(
            f"{archive}: missing CIFAR-10 batches {', '.join(missing)} "
            f"(expected members under {FOLDERS['bin']}/ or {FOLDERS['py']}/)"
        )
    return batches
