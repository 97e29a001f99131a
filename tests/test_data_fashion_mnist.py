"""Integration: the real Fashion-MNIST, from the Debian package dataset-fashion-mnist (which
.ci/run installs into /usr/share/datasets/fashion-mnist), read back to the published bytes."""

import hashlib
import json
import subprocess
import sys

import numpy as np

from cnnlab.data import DataLoader, channel_stats, load_dataset
from test_data_formats import idx_bytes

DEBIAN_FOLDER = "/usr/share/datasets/fashion-mnist"
# MD5 of each official file once decompressed, as the Fashion-MNIST authors' files give them.
DECOMPRESSED_MD5 = {
    "train_images": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train_labels": "9018921c3c673c538a1fc5bad174d6f9",
    "test_images": "8181f5470baa50b63fa0f6fddb340f0a",
    "test_labels": "15d484375f8d13e6eb1aabb0c3f46965",
}


def md5_of_idx(array):
    return hashlib.md5(idx_bytes(array)).hexdigest()


def test_real_fashion_mnist_is_found_by_default_and_read_exactly(monkeypatch, tmp_path):
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty cache: the package is used
    train, test = load_dataset("fashion-mnist")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert md5_of_idx(train.images[:, 0]) == DECOMPRESSED_MD5["train_images"]
    assert md5_of_idx(train.labels.astype(np.uint8)) == DECOMPRESSED_MD5["train_labels"]
    assert md5_of_idx(test.images[:, 0]) == DECOMPRESSED_MD5["test_images"]
    assert md5_of_idx(test.labels.astype(np.uint8)) == DECOMPRESSED_MD5["test_labels"]
    np.testing.assert_array_equal(np.bincount(train.labels), np.full(10, 6000))
    assert train.classes[int(train.labels[0])] == "Ankle boot"


def test_real_fashion_mnist_statistics_and_one_epoch_of_batches():
    train, _ = load_dataset("fashion-mnist", data_dir=DEBIAN_FOLDER)
    mean, std = channel_stats(train)
    np.testing.assert_allclose(mean, [0.2860], atol=1e-4)  # the widely quoted values
    np.testing.assert_allclose(std, [0.3530], atol=1e-4)
    loader = DataLoader(train, 1000, shuffle=True, seed=0, mean=mean, std=std)
    total, seen = 0.0, 0
    for x, y in loader:
        total += float(x.sum(dtype=np.float64))
        seen += len(y)
    assert seen == 60000 and abs(total / (seen * 784)) < 1e-3  # normalised mean is 0


MEASURE = """
import json, resource
from cnnlab.data import load_dataset
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
train, test = load_dataset("fashion-mnist", data_dir=%r)
added = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
raw = train.images.nbytes + test.images.nbytes + len(train) + len(test)
print(json.dumps({"ratio": added / raw}))
"""


def test_full_load_stays_near_the_raw_size():
    """The issue's memory bound: peak memory added under 3x the raw uint8 size, measured in a
    fresh process. The load time (the issue's other bound, under 3 s) is
    benchmarks/bench_data.py's to print: timings belong in benchmarks, not in tests."""
    result = subprocess.run([sys.executable, "-c", MEASURE % DEBIAN_FOLDER], check=True,
                            capture_output=True, text=True)
    measured = json.loads(result.stdout)
    assert measured["ratio"] < 3.0, measured
