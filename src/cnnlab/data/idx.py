"""The IDX format of MNIST and Fashion-MNIST, gzipped or not.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values in C order. Both datasets use type code
0x08 (unsigned byte): images are (N, 28, 28), magic 0x00000803; labels are (N,), magic
0x00000801.
"""

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from cnnlab.errors import DatasetError

from .dataset import ImageDataset

UBYTE = 0x08
GZIP_MAGIC = b"\x1f\x8b"
MAX_DATA_BYTES = 1 << 30  # a header declaring more than 1 GiB is refused before allocating


def _open(path: Path):
    """A binary file object, decompressing when the file starts with the gzip magic bytes."""
    try:
        with open(path, "rb") as probe:
            compressed = probe.read(2) == GZIP_MAGIC
        return gzip.open(path, "rb") if compressed else open(path, "rb")
    except OSError as error:
        raise DatasetError(f"{path}: cannot open: {error.strerror or error}") from error


def read_idx(path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file with `ndim` dimensions.

    Args:
        path: the file, raw or gzip-compressed (recognised by content, not by name).
        ndim: the number of dimensions the caller expects (3 for images, 1 for labels).

    Returns:
        uint8 array of the shape the header declares, e.g. (N, H, W) or (N,).

    Raises:
        DatasetError naming the file: missing, wrong magic number, truncated, extra bytes after
        the declared data, or a damaged gzip stream.
    """
    path = Path(path)
    expected_magic = (UBYTE << 8) | ndim
    try:
        with _open(path) as stream:
            header = stream.read(4)
            if len(header) < 4:
                raise DatasetError(f"{path}: truncated: {len(header)} bytes, no IDX header")
            (magic,) = struct.unpack(">I", header)
            if magic != expected_magic:
                raise DatasetError(
                    f"{path}: wrong magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
                    f"(an IDX file of unsigned bytes with {ndim} dimension(s))"
                )
            dims_bytes = stream.read(4 * ndim)
            if len(dims_bytes) < 4 * ndim:
                raise DatasetError(f"{path}: truncated inside the IDX header")
            shape = struct.unpack(f">{ndim}I", dims_bytes)
            size = int(np.prod(shape, dtype=np.int64))
            if size > MAX_DATA_BYTES:
                raise DatasetError(
                    f"{path}: header declares shape {shape} ({size} bytes), more than the "
                    f"{MAX_DATA_BYTES} bytes this reader accepts"
                )
            values = np.empty(size, dtype=np.uint8)
            found = stream.readinto(memoryview(values)) if size else 0
            if found < size:
                raise DatasetError(
                    f"{path}: truncated: header declares shape {shape} ({size} bytes of data), "
                    f"found {found}"
                )
            if stream.read(1):
                raise DatasetError(
                    f"{path}: count mismatch: more data than the {size} bytes the header "
                    f"declares for shape {shape}"
                )
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DatasetError(f"{path}: damaged gzip stream: {error}") from error
    except OSError as error:
        raise DatasetError(f"{path}: cannot read: {error}") from error
    return values.reshape(shape)


def load_idx_pair(images_path, labels_path, classes) -> ImageDataset:
    """Images and labels from a pair of IDX files, checked against each other.

    Args:
        images_path: IDX file of shape (N, H, W).
        labels_path: IDX file of shape (N,), each label in 0..len(classes) - 1.
        classes: class names.

    Returns:
        ImageDataset with images (N, 1, H, W) uint8 and labels (N,) int64.
    """
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if len(labels) != len(images):
        raise DatasetError(
            f"{labels_path}: count mismatch: {len(labels)} labels, but {images_path} holds "
            f"{len(images)} images"
        )
    if len(labels) and labels.max() >= len(classes):
        bad = int(np.argmax(labels >= len(classes)))
        raise DatasetError(
            f"{labels_path}: label {labels[bad]} at index {bad} is out of range "
            f"0..{len(classes) - 1}"
        )
    return ImageDataset(images[:, None], labels, list(classes))
