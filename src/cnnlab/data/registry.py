"""The built-in datasets: class names, official download locations and checksums.

Checksums are the MD5 sums the dataset authors publish (and torchvision checks) for the
compressed files exactly as served. A download is accepted only when its sum matches, which is
what catches a mirror serving the wrong dataset under the right file names.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name on the server and on disk, and its MD5 sum."""

    name: str
    md5: str


@dataclass(frozen=True)
class DatasetInfo:
    """What cnnlab knows about a built-in dataset.

    Attributes:
        name: the name given to `load_dataset` and `--dataset`.
        classes: class names, indexed by label.
        mirror: base URL of the official files (a trailing slash, file names appended).
        files: the files `download=True` fetches into the dataset's folder.
        system_dirs: folders a system package installs the files into, searched after
            `$CNNLAB_DATA` and before the user's cache.
    """

    name: str
    classes: tuple[str, ...]
    mirror: str
    files: tuple[RemoteFile, ...]
    system_dirs: tuple[str, ...] = ()


FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MNIST_CLASSES = tuple(str(digit) for digit in range(10))
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

# The four IDX files of MNIST and Fashion-MNIST, without the ".gz" they are served with.
IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        classes=FASHION_MNIST_CLASSES,
        mirror="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        files=(
            RemoteFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            RemoteFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            RemoteFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        ),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
    "mnist": DatasetInfo(
        name="mnist",
        classes=MNIST_CLASSES,
        mirror="https://ossci-datasets.s3.amazonaws.com/mnist/",
        files=(
            RemoteFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            RemoteFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            RemoteFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        classes=CIFAR10_CLASSES,
        mirror="https://www.cs.toronto.edu/~kriz/",
        files=(RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),),
    ),
}

# The binary distribution is read too (from a folder or the archive); it is not downloaded.
CIFAR10_BINARY_ARCHIVE = RemoteFile("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")
