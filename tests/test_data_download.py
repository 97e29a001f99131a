"""Downloads against a small HTTP server on loopback serving generated files (never the
internet): accepted only with the right checksum, written atomically, never left half-done."""

import dataclasses
import functools
import hashlib
import http.server
import threading

import numpy as np
import pytest

from cnnlab.data import DATASETS, DatasetError, RemoteFile, download_file, load_dataset
from test_data_formats import (
    assert_cifar_equal,
    assert_one_line_error,
    make_cifar_batches,
    make_idx_dataset,
    write_cifar_archive,
    write_cifar_folder,
)


@pytest.fixture
def server(tmp_path):
    """(folder served, base URL) of a quiet HTTP server on 127.0.0.1."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def with_served_checksums(name, served):
    """The registry entry for `name`, trusting the checksums of the files being served."""
    info = DATASETS[name]
    files = tuple(RemoteFile(remote.name, md5(served / remote.name)) for remote in info.files)
    return dataclasses.replace(info, files=files)


def test_download_then_load_value_by_value(server, tmp_path, monkeypatch):
    served, url = server
    arrays = make_idx_dataset(served)
    monkeypatch.setitem(DATASETS, "mnist", with_served_checksums("mnist", served))
    train, test = load_dataset("mnist", data_dir=tmp_path / "data", download=True, mirror=url)
    np.testing.assert_array_equal(train.images[:, 0], arrays["train_images"])
    np.testing.assert_array_equal(test.labels, arrays["test_labels"])
    stored = sorted(path.name for path in (tmp_path / "data" / "mnist").iterdir())
    assert stored == sorted(remote.name for remote in DATASETS["mnist"].files)


def test_download_goes_to_the_cache_and_mirror_comes_from_the_environment(
    server, tmp_path, monkeypatch
):
    served, url = server
    arrays = make_idx_dataset(served)
    monkeypatch.setitem(DATASETS, "mnist", with_served_checksums("mnist", served))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNLAB_MIRROR", url)
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    train, _ = load_dataset("mnist", download=True)
    np.testing.assert_array_equal(train.labels, arrays["train_labels"])
    assert (tmp_path / "cache" / "cnnlab" / "mnist" / "train-labels-idx1-ubyte.gz").is_file()


def test_a_mirror_serving_other_files_is_caught_by_the_official_checksum(server, tmp_path):
    """Generated files under Fashion-MNIST's names, as a wrong mirror would serve them."""
    served, url = server
    make_idx_dataset(served)
    target = tmp_path / "data"
    with pytest.raises(DatasetError) as error:
        load_dataset("fashion-mnist", data_dir=target, download=True, mirror=url)
    assert_one_line_error(
        error, url + "train-images-idx3-ubyte.gz", "checksum mismatch",
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d", md5(served / "train-images-idx3-ubyte.gz"),
    )
    assert list((target / "fashion-mnist").iterdir()) == []  # nothing kept, no temporary file


def test_missing_file_on_the_server(server, tmp_path):
    served, url = server
    with pytest.raises(DatasetError) as error:
        download_file(url + "absent.gz", tmp_path / "absent.gz", md5="0" * 32)
    assert_one_line_error(error, "absent.gz", "download failed", "404")
    assert list(tmp_path.iterdir()) == [served]


def test_an_interrupted_download_is_completed_and_kept_files_are_not_fetched_again(
    server, tmp_path, monkeypatch
):
    served, url = server
    make_idx_dataset(served)
    info = with_served_checksums("mnist", served)
    monkeypatch.setitem(DATASETS, "mnist", info)
    target = tmp_path / "mnist"
    download_file(url + info.files[0].name, target / info.files[0].name, info.files[0].md5)
    (served / info.files[0].name).unlink()  # would now 404 if fetched again
    train, _ = load_dataset("mnist", data_dir=tmp_path, download=True, mirror=url)
    assert len(train) == 12


def test_mirror_must_be_http(tmp_path):
    with pytest.raises(DatasetError, match="http"):
        load_dataset("mnist", data_dir=tmp_path, download=True, mirror="file:///etc/")


def test_cifar10_download_is_read_from_the_archive(server, tmp_path, monkeypatch):
    served, url = server
    batches = make_cifar_batches(seed=9)
    folder = write_cifar_folder(tmp_path / "src", batches, "py")
    write_cifar_archive(served / "cifar-10-python.tar.gz", folder)
    monkeypatch.setitem(DATASETS, "cifar10", with_served_checksums("cifar10", served))
    train, test = load_dataset("cifar10", data_dir=tmp_path / "data", download=True, mirror=url)
    assert_cifar_equal(train, test, batches)
    assert [path.name for path in (tmp_path / "data" / "cifar10").iterdir()] == [
        "cifar-10-python.tar.gz"
    ]
