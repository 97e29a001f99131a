"""Datasets in, safely: the built-in datasets (Fashion-MNIST, MNIST, CIFAR-10) and folders of
images as uint8 arrays, validation splits, channel statistics, and a seeded, resumable loader
with batch-vectorised augmentation.

Files are never trusted: a damaged or hostile file gives a `DatasetError` naming it, and
nothing in a dataset file can run code (no pickle except CIFAR-10's, through an allow-list).
"""

from cnnlab.errors import DatasetError

from .augment import Compose, RandomCrop, RandomHorizontalFlip, RandomTranslate
from .cifar import SafeUnpickler, load_cifar10
from .dataset import ImageDataset, channel_stats, train_val_split
from .download import download_dataset, download_file
from .folder import DatasetWarning, load_folder_dataset, load_image, load_image_folder
from .idx import load_idx_pair, read_idx
from .loader import DataLoader
from .registry import DATASETS, DatasetInfo, RemoteFile
from .sources import cache_dir, load_dataset, locate

__all__ = [
    "DATASETS",
    "Compose",
    "DataLoader",
    "DatasetError",
    "DatasetInfo",
    "DatasetWarning",
    "ImageDataset",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomTranslate",
    "RemoteFile",
    "SafeUnpickler",
    "cache_dir",
    "channel_stats",
    "download_dataset",
    "download_file",
    "load_cifar10",
    "load_dataset",
    "load_folder_dataset",
    "load_idx_pair",
    "load_image",
    "load_image_folder",
    "locate",
    "read_idx",
    "train_val_split",
]
