"""Dataset file formats: small files written here in each exact official layout, read back and
compared value by value, and every kind of damage reported as a one-line DatasetError naming
the file. Also the writers the other data tests import."""

import codecs
import gzip
import pickle
import struct
import tarfile
import warnings

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import (
    DATASETS,
    DatasetError,
    DatasetWarning,
    load_cifar10,
    load_dataset,
    load_image,
    read_idx,
)
from cnnlab.data.registry import CIFAR10_CLASSES, IDX_STEMS

# ---------------------------------------------------------------- writers in the official formats


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file: magic 0x0000 08 ndim, big-endian uint32 dims, the bytes."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path, array, compress=True):
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def make_idx_dataset(folder, n_train=12, n_test=5, shape=(6, 5), seed=0, compress=True):
    """Write the four MNIST-layout files; return the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for role, array in arrays.items():
        name = IDX_STEMS[role] + (".gz" if compress else "")
        write_idx(folder / name, array, compress)
    return arrays


def make_cifar_batches(n=4, seed=0):
    """{batch name: (images (n, 3, 32, 32) uint8, labels (n,))} for the six official batches."""
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]
    return {
        name: (rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n))
        for name in names
    }


def cifar_bin_bytes(images, labels) -> bytes:
    labels = np.asarray(labels, np.uint8)[:, None]
    records = np.concatenate([labels, images.reshape(len(images), -1)], axis=1)
    return records.tobytes()


def cifar_py_bytes(images, labels, name="training batch 1 of 5") -> bytes:
    batch = {
        b"batch_label": name.encode(),
        b"labels": [int(label) for label in labels],
        b"data": images.reshape(len(images), -1),
        b"filenames": [f"img_{index}.png".encode() for index in range(len(images))],
    }
    return pickle.dumps(batch, protocol=2)


def py2_string(data: bytes) -> bytes:
    """A Python 2 str, as Python 2's pickle wrote it (SHORT_BINSTRING or BINSTRING)."""
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data
    return b"T" + struct.pack("<I", len(data)) + data


def py2_cifar_pickle(images, labels) -> bytes:
    """A CIFAR-10 python batch opcode by opcode as Python 2 with NumPy wrote the originals:
    str keys and values are Python 2 strings, the array names numpy.core.multiarray."""
    data = images.reshape(len(images), -1)
    rows, cols = data.shape
    dtype = (b"cnumpy\ndtype\n" + py2_string(b"u1") + b"K\x00K\x01\x87R"
             + b"(K\x03" + py2_string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
             + py2_string(b"b") + b"\x87R"
             + b"(K\x01K" + bytes([rows]) + b"M" + struct.pack("<H", cols) + b"\x86" + dtype
             + b"\x89" + py2_string(data.tobytes()) + b"tb")
    label_list = b"](" + b"".join(b"K" + bytes([int(label)]) for label in labels) + b"e"
    return (b"\x80\x02}(" + py2_string(b"data") + array + py2_string(b"labels") + label_list
            + py2_string(b"batch_label") + py2_string(b"testing batch 1 of 1") + b"u.")


def write_cifar_folder(root, batches, version):
    folder = root / f"cifar-10-batches-{version}"
    folder.mkdir(parents=True)
    for name, (images, labels) in batches.items():
        if version == "bin":
            (folder / f"{name}.bin").write_bytes(cifar_bin_bytes(images, labels))
        else:
            (folder / name).write_bytes(cifar_py_bytes(images, labels))
    if version == "bin":
        (folder / "batches.meta.txt").write_text("\n".join(CIFAR10_CLASSES) + "\n\n")
    return folder


def write_cifar_archive(path, folder):
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return path


def assert_one_line_error(error_info, *fragments):
    message = str(error_info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("compress", [True, False])
def test_idx_dataset_loads_value_by_value(tmp_path, compress):
    arrays = make_idx_dataset(tmp_path, compress=compress)
    train, test = load_dataset("fashion-mnist", data_dir=tmp_path)
    np.testing.assert_array_equal(train.images[:, 0], arrays["train_images"])
    np.testing.assert_array_equal(train.labels, arrays["train_labels"])
    np.testing.assert_array_equal(test.images[:, 0], arrays["test_images"])
    np.testing.assert_array_equal(test.labels, arrays["test_labels"])
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert train.images.shape == (12, 1, 6, 5)
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"


def test_idx_reads_the_dataset_subfolder_before_the_folder_itself(tmp_path):
    make_idx_dataset(tmp_path, seed=1)
    inner = make_idx_dataset(tmp_path / "mnist", seed=2)
    train, _ = load_dataset("mnist", data_dir=tmp_path)
    np.testing.assert_array_equal(train.labels, inner["train_labels"])
    assert train.classes == [str(digit) for digit in range(10)]


def test_idx_wrong_magic(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.zeros((3, 2, 2), np.uint8)))
    with pytest.raises(DatasetError) as error:
        read_idx(path, ndim=1)
    assert_one_line_error(error, str(path), "wrong magic number 0x00000803", "0x00000801")


@pytest.mark.parametrize("compress", [True, False])
def test_idx_truncated(tmp_path, compress):
    data = idx_bytes(np.ones((4, 3, 3), np.uint8))[:-5]
    path = tmp_path / "images"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DatasetError) as error:
        read_idx(path, ndim=3)
    assert_one_line_error(error, str(path), "truncated", "36 bytes", "found 31")


def test_idx_truncated_gzip_stream(tmp_path):
    path = tmp_path / "images.gz"
    compressed = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8).reshape(2, 10, 10)))
    path.write_bytes(compressed[:-12])
    with pytest.raises(DatasetError) as error:
        read_idx(path, ndim=3)
    assert_one_line_error(error, str(path), "gzip")


def test_idx_extra_bytes_are_a_count_mismatch(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.arange(5, dtype=np.uint8)) + b"\x00")
    with pytest.raises(DatasetError) as error:
        read_idx(path, ndim=1)
    assert_one_line_error(error, str(path), "count mismatch")


def test_idx_label_count_differs_from_image_count(tmp_path):
    make_idx_dataset(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(11, np.uint8))
    with pytest.raises(DatasetError) as error:
        load_dataset("mnist", data_dir=tmp_path)
    assert_one_line_error(error, "train-labels-idx1-ubyte.gz", "count mismatch", "11 labels", "12")


def test_idx_label_out_of_range(tmp_path):
    make_idx_dataset(tmp_path)
    labels = np.zeros(5, np.uint8)
    labels[3] = 10
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DatasetError) as error:
        load_dataset("mnist", data_dir=tmp_path)
    assert_one_line_error(error, "t10k-labels-idx1-ubyte.gz", "label 10 at index 3", "0..9")


def test_idx_missing_file_in_data_dir_is_an_error_even_with_a_copy_elsewhere(
    tmp_path, monkeypatch
):
    make_idx_dataset(tmp_path / "elsewhere" / "mnist")
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "elsewhere"))
    make_idx_dataset(tmp_path / "given")
    (tmp_path / "given" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetError) as error:
        load_dataset("mnist", data_dir=tmp_path / "given")
    assert_one_line_error(error, str(tmp_path / "given"), "missing t10k-images-idx3-ubyte")


def test_empty_data_dir_is_an_error_naming_where_it_looked(tmp_path, monkeypatch):
    make_idx_dataset(tmp_path / "elsewhere" / "fashion-mnist")
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "elsewhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as error:
        load_dataset("fashion-mnist", data_dir=tmp_path / "empty")
    assert_one_line_error(error, "fashion-mnist not found", str(tmp_path / "empty"), "--download")


def test_lookup_order_environment_then_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    cached = make_idx_dataset(tmp_path / "cache" / "cnnlab" / "mnist", seed=3)
    np.testing.assert_array_equal(load_dataset("mnist")[0].labels, cached["train_labels"])
    environment = make_idx_dataset(tmp_path / "env" / "mnist", seed=4)
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    np.testing.assert_array_equal(load_dataset("mnist")[0].labels, environment["train_labels"])


def test_nothing_anywhere_lists_the_places(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetError) as error:
        load_dataset("mnist")
    assert_one_line_error(error, str(tmp_path / "env"), str(tmp_path / "cache" / "cnnlab"))


def test_unknown_spec_and_misplaced_options():
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        load_dataset("svhn")
    with pytest.raises(ValueError, match="folder datasets"):
        load_dataset("mnist", image_size=32)


# ---------------------------------------------------------------- CIFAR-10


def assert_cifar_equal(train, test, batches):
    names = [f"data_batch_{index}" for index in range(1, 6)]
    np.testing.assert_array_equal(train.images, np.concatenate([batches[n][0] for n in names]))
    np.testing.assert_array_equal(train.labels, np.concatenate([batches[n][1] for n in names]))
    np.testing.assert_array_equal(test.images, batches["test_batch"][0])
    np.testing.assert_array_equal(test.labels, batches["test_batch"][1])
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    assert train.classes == list(CIFAR10_CLASSES)


@pytest.mark.parametrize("version", ["bin", "py"])
def test_cifar_folder(tmp_path, version):
    batches = make_cifar_batches()
    folder = write_cifar_folder(tmp_path, batches, version)
    assert_cifar_equal(*load_cifar10(folder), batches)  # the batches folder itself
    assert_cifar_equal(*load_dataset("cifar10", data_dir=tmp_path), batches)  # its parent


@pytest.mark.parametrize("version", ["bin", "py"])
def test_cifar_archive_read_without_extracting(tmp_path, version):
    batches = make_cifar_batches(seed=5)
    folder = write_cifar_folder(tmp_path / "src", batches, version)
    name = "cifar-10-binary.tar.gz" if version == "bin" else "cifar-10-python.tar.gz"
    archive = write_cifar_archive(tmp_path / name, folder)
    assert_cifar_equal(*load_dataset("cifar10", data_dir=archive), batches)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["src", name])


def test_cifar_python2_pickles_with_numpy_core_paths_load(tmp_path):
    """The originals were written by Python 2 NumPy, naming numpy.core.multiarray."""
    batches = make_cifar_batches()
    folder = write_cifar_folder(tmp_path, batches, "py")
    for file in folder.iterdir():
        data = file.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        file.write_bytes(data)
    assert b"numpy.core.multiarray" in (folder / "test_batch").read_bytes()
    assert_cifar_equal(*load_cifar10(folder), batches)


def test_cifar_python2_opcodes_as_in_the_original_files(tmp_path):
    batches = make_cifar_batches()
    folder = write_cifar_folder(tmp_path, batches, "py")
    for name, (images, labels) in batches.items():
        payload = py2_cifar_pickle(images, labels)
        plain = pickle.loads(payload, encoding="bytes")  # the crafted bytes are a real pickle
        np.testing.assert_array_equal(plain[b"data"], images.reshape(len(images), -1))
        assert plain[b"labels"] == list(labels)
        (folder / name).write_bytes(payload)
    assert_cifar_equal(*load_cifar10(folder), batches)


def test_cifar_bin_wrong_record_size(tmp_path):
    folder = write_cifar_folder(tmp_path, make_cifar_batches(), "bin")
    file = folder / "data_batch_3.bin"
    file.write_bytes(file.read_bytes()[:-1])
    with pytest.raises(DatasetError) as error:
        load_cifar10(folder)
    assert_one_line_error(error, str(file), "wrong record size", "3073-byte")


def test_cifar_bin_label_out_of_range(tmp_path):
    batches = make_cifar_batches()
    batches["test_batch"][1][2] = 11
    folder = write_cifar_folder(tmp_path, batches, "bin")
    with pytest.raises(DatasetError) as error:
        load_cifar10(folder)
    assert_one_line_error(error, "test_batch.bin", "label 11 at index 2", "out of range")


def test_cifar_py_label_out_of_range_and_count_mismatch(tmp_path):
    batches = make_cifar_batches()
    folder = write_cifar_folder(tmp_path, batches, "py")
    images, labels = batches["data_batch_2"]
    (folder / "data_batch_2").write_bytes(cifar_py_bytes(images, [0, 1, -1, 2]))
    with pytest.raises(DatasetError) as error:
        load_cifar10(folder)
    assert_one_line_error(error, "data_batch_2", "label -1 at index 2")
    (folder / "data_batch_2").write_bytes(cifar_py_bytes(images, [0, 1]))
    with pytest.raises(DatasetError) as error:
        load_cifar10(folder)
    assert_one_line_error(error, "data_batch_2", "count mismatch")


def test_cifar_py_wrong_record_size(tmp_path):
    batches = make_cifar_batches()
    folder = write_cifar_folder(tmp_path, batches, "py")
    images, labels = batches["test_batch"]
    (folder / "test_batch").write_bytes(cifar_py_bytes(images[:, :, :16], labels))
    with pytest.raises(DatasetError) as error:
        load_cifar10(folder)
    assert_one_line_error(error, "test_batch", "wrong record size", "(4, 1536)")


def test_cifar_missing_batch(tmp_path):
    folder = write_cifar_folder(tmp_path, make_cifar_batches(), "bin")
    (folder / "data_batch_4.bin").unlink()
    with pytest.raises(DatasetError) as error:
        load_cifar10(folder)
    assert_one_line_error(error, "data_batch_4.bin", "missing")


def test_cifar_archive_missing_batch_and_damage(tmp_path):
    folder = write_cifar_folder(tmp_path / "src", make_cifar_batches(), "py")
    (folder / "test_batch").unlink()
    archive = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", folder)
    with pytest.raises(DatasetError) as error:
        load_cifar10(archive)
    assert_one_line_error(error, str(archive), "missing CIFAR-10 batches test_batch")
    archive.write_bytes(archive.read_bytes()[: len(archive.read_bytes()) // 2])
    with pytest.raises(DatasetError) as error:
        load_cifar10(archive)
    assert_one_line_error(error, str(archive))


class _CreatesFile:
    """Unpickled by plain pickle, this runs code that creates `target`."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return exec, (f"open({self.target!r}, 'w').close()",)


def test_cifar_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    target = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _CreatesFile(target), b"labels": [0]}, protocol=2)
    pickle.loads(payload)  # proves the payload is live: plain pickle creates the file
    assert target.exists()
    target.unlink()

    folder = write_cifar_folder(tmp_path / "data", make_cifar_batches(), "py")
    (folder / "data_batch_1").write_bytes(payload)
    with pytest.raises(DatasetError) as error:
        load_cifar10(folder)
    assert_one_line_error(error, "data_batch_1", "refused global", "exec")
    assert not target.exists()


@pytest.mark.parametrize(
    "payload, refused",
    [
        (np.array([1, "a"], dtype=object), "Python objects"),
        (np.ma.masked_array([1, 2]), "refused global numpy.ma.core"),
        ({1, 2}, "refused global __builtin__.set"),  # protocol 2 names Python 2 modules
    ],
)
def test_cifar_pickle_refuses_everything_but_plain_arrays(tmp_path, payload, refused):
    folder = write_cifar_folder(tmp_path, make_cifar_batches(), "py")
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": payload}, protocol=2))
    with pytest.raises(DatasetError) as error:
        load_cifar10(folder)
    assert_one_line_error(error, "test_batch", refused)


class _Encodes:
    def __init__(self, *arguments):
        self.arguments = arguments

    def __reduce__(self):
        return codecs.encode, self.arguments


def test_cifar_pickle_codecs_limited_to_latin1(tmp_path):
    evil = pickle.dumps(_Encodes("abc", "rot_13"), protocol=2)
    assert b"_codecs\nencode" in evil
    folder = write_cifar_folder(tmp_path, make_cifar_batches(), "py")
    (folder / "test_batch").write_bytes(evil)
    with pytest.raises(DatasetError) as error:
        load_cifar10(folder)
    assert_one_line_error(error, "test_batch", "encoding 'rot_13'")


# ---------------------------------------------------------------- image folders


def save_image(path, array, mode):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=None).convert(mode).save(path)


def make_image_folder(root, per_class=5, size=(6, 7), seed=0):
    """root/<class>/*.png in RGB; returns {class: [(H, W, 3) arrays in file order]}."""
    rng = np.random.default_rng(seed)
    written = {}
    for name in ["dog", "ant", "cat"]:
        written[name] = []
        for index in range(per_class):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            save_image(root / name / f"{index:02d}.png", pixels, "RGB")
            written[name].append(pixels)
    return written


def test_image_folder_classes_sorted_values_exact(tmp_path):
    written = make_image_folder(tmp_path / "data" / "train")
    make_image_folder(tmp_path / "data" / "test", per_class=2, seed=1)
    train, test = load_dataset(f"folder:{tmp_path / 'data'}")
    assert train.classes == ["ant", "cat", "dog"] and test.classes == train.classes
    assert train.images.shape == (15, 3, 6, 7) and test.images.shape == (6, 3, 6, 7)
    np.testing.assert_array_equal(train.labels, np.repeat([0, 1, 2], 5))
    np.testing.assert_array_equal(train.images[5], written["cat"][0].transpose(2, 0, 1))
    assert train.skipped == []


def test_image_folder_converts_modes_and_sizes(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    save_image(tmp_path / "a" / "0.png", grey, "L")
    save_image(tmp_path / "a" / "1.jpg", rng.integers(0, 256, (16, 10, 3), dtype=np.uint8), "RGB")
    save_image(tmp_path / "b" / "0.bmp", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), "P")
    save_image(tmp_path / "b" / "1.png", rng.integers(0, 256, (8, 8), dtype=np.uint8), "L")
    from cnnlab.data import load_image_folder

    inferred = load_image_folder(tmp_path)
    assert inferred.images.shape == (4, 1, 8, 8)  # from the first image, a grey 8x8
    np.testing.assert_array_equal(inferred.images[0, 0], grey)
    given = load_image_folder(tmp_path, image_size=(5, 3), channels=3)
    assert given.images.shape == (4, 3, 5, 3)
    np.testing.assert_array_equal(given.images[0, 0], given.images[0, 2])  # grey -> RGB


def test_image_folder_reports_odd_files_or_refuses_them_with_strict(tmp_path):
    make_image_folder(tmp_path, per_class=3)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.warns(DatasetWarning, match="skipped 2 file"):
        train, test = load_dataset(f"folder:{tmp_path}")
    assert len(train) + len(test) == 9
    assert any("notes.txt: not an image file" in line for line in train.skipped)
    assert any("broken.png: " in line for line in train.skipped)
    with pytest.raises(DatasetError) as error:
        load_dataset(f"folder:{tmp_path}", strict=True)
    assert_one_line_error(error, "notes.txt")


def test_image_folder_held_out_test_set_is_fixed_and_per_class(tmp_path):
    make_image_folder(tmp_path, per_class=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean folder warns about nothing
        train, test = load_dataset(f"folder:{tmp_path}")
    again_train, again_test = load_dataset(f"folder:{tmp_path}")
    np.testing.assert_array_equal(test.images, again_test.images)
    np.testing.assert_array_equal(np.bincount(test.labels), [2, 2, 2])
    np.testing.assert_array_equal(np.bincount(train.labels), [8, 8, 8])
    together = np.concatenate([train.images, test.images]).reshape(30, -1)
    assert len(np.unique(together, axis=0)) == 30  # disjoint and complete


def test_image_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        load_dataset(f"folder:{tmp_path / 'absent'}")
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "x.txt").write_text("x")
    with pytest.raises(DatasetError, match="no class folders"):
        load_dataset(f"folder:{tmp_path / 'only'}")


def test_load_image_for_prediction(tmp_path):
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    save_image(tmp_path / "x.png", pixels, "RGB")
    np.testing.assert_array_equal(load_image(tmp_path / "x.png"), pixels.transpose(2, 0, 1))
    grey = load_image(tmp_path / "x.png", size=(2, 3), channels=1)
    assert grey.shape == (1, 2, 3) and grey.dtype == np.uint8
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(DatasetError) as error:
        load_image(tmp_path / "bad.jpg")
    assert_one_line_error(error, "bad.jpg", "cannot read")


def test_registry_has_the_official_checksums():
    assert DATASETS["fashion-mnist"].files[0].md5 == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    assert DATASETS["mnist"].files[0].md5 == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert DATASETS["cifar10"].files[0].md5 == "c58f30108f718f92721af3b95e74349a"
