"""Checkpoint details: the checksum covers each array's name, dtype and shape, not only its
bytes; arrays in any memory layout and values numpy takes (lists, numbers) are stored as
they read; array names are checked."""

import json
import re

import numpy as np
import pytest

from cnnlab import Tensor
from cnnlab.checkpoint import (
    content_sha256,
    flatten_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_state,
)
from cnnlab.errors import CheckpointError


@pytest.mark.parametrize("before, after", [(b'"shape":[2,3]', b'"shape":[3,2]'),
                                           (b'"F32"', b'"I32"'), (b'"grid"', b'"gird"')])
def test_a_header_that_changes_an_arrays_shape_dtype_or_name_is_corrupt(tmp_path, rng, before,
                                                                         after):
    """The bytes stay the same; only the header's description of them changes."""
    save_checkpoint(tmp_path / "c", {"grid": rng.standard_normal((2, 3)).astype(np.float32)})
    weights = tmp_path / "c.safetensors"
    blob = weights.read_bytes()
    assert blob.count(before) == 1
    weights.write_bytes(blob.replace(before, after))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "c")


def test_arrays_in_any_layout_are_saved_as_they_read(tmp_path, rng):
    grid = rng.standard_normal((3, 4)).astype(np.float32)
    arrays = {"transposed": grid.T, "strided": grid[:, ::2], "fortran": np.asfortranarray(grid),
              "scalar": np.array(2.5), "tensor": Tensor(grid.T)}
    save_checkpoint(tmp_path / "c", arrays)
    loaded, _ = load_checkpoint(tmp_path / "c")
    for name, value in arrays.items():
        expected = value.data if isinstance(value, Tensor) else value
        assert loaded[name].shape == expected.shape and loaded[name].dtype == expected.dtype
        np.testing.assert_array_equal(loaded[name], expected)


def test_lists_and_numbers_are_saved_as_numpy_reads_them(tmp_path):
    save_checkpoint(tmp_path / "c", {"list": [[1, 2], [3, 4]], "count": 7, "flag": True})
    loaded, _ = load_checkpoint(tmp_path / "c")
    np.testing.assert_array_equal(loaded["list"], np.array([[1, 2], [3, 4]]))
    assert loaded["count"].shape == () and loaded["count"] == 7
    assert loaded["flag"].dtype == np.bool_ and loaded["flag"]


def test_the_checksum_reads_what_numpy_reads():
    assert content_sha256({"a": [[1.0, 2.0]]}, "{}") == content_sha256(
        {"a": np.array([[1.0, 2.0]])}, "{}")
    assert content_sha256({"a": np.array([1.0, 2.0])}, "{}") != content_sha256(
        {"b": np.array([1.0, 2.0])}, "{}")


@pytest.mark.parametrize("name", ["", 3, None])
def test_array_names_must_be_non_empty_strings(tmp_path, name):
    with pytest.raises(ValueError, match="array names must be non-empty strings"):
        save_checkpoint(tmp_path / "c", {name: np.zeros(2)})
    assert not list(tmp_path.iterdir())


def test_metadata_defaults_to_empty_and_the_json_file_is_indented(tmp_path):
    save_checkpoint(tmp_path / "c", {"a": np.zeros(2)})
    assert load_checkpoint(tmp_path / "c")[1] == {}
    text = (tmp_path / "c.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2) + "\n"
    assert '\n  "cnnlab_checkpoint": {\n    "format"' in text


@pytest.fixture
def weights(tmp_path, rng):
    save_checkpoint(tmp_path / "c", {"a": rng.standard_normal(4)}, {"epoch": 1})
    return tmp_path / "c.safetensors"


@pytest.mark.parametrize("length", [0, 1, 5, 7])
def test_a_file_shorter_than_the_header_length_is_truncated(weights, length):
    weights.write_bytes(weights.read_bytes()[:length])
    with pytest.raises(CheckpointError, match=rf"truncated checkpoint \({length} bytes\)$"):
        load_checkpoint(weights)


def test_an_empty_header_is_unreadable(weights):
    weights.write_bytes(bytes(8))
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint \(unreadable header\)$"):
        load_checkpoint(weights)


@pytest.mark.parametrize("extra", [1, 8, 2**56])
def test_a_header_longer_than_the_file_is_refused(weights, extra):
    """The header's length is all 8 bytes, little-endian: a length past the file's end by one
    byte, or in the eighth byte alone, is refused."""
    blob = weights.read_bytes()
    size = int.from_bytes(blob[:8], "little")
    claimed = len(blob) - 8 + extra if extra < 2**56 else size + extra
    weights.write_bytes(claimed.to_bytes(8, "little") + blob[8:])
    with pytest.raises(CheckpointError,
                       match=rf"\(header of {claimed} bytes in a file of {len(blob)}\)$"):
        load_checkpoint(weights)


def test_an_unreadable_weights_file_is_a_checkpoint_error(tmp_path):
    (tmp_path / "c.safetensors").mkdir()
    with pytest.raises(CheckpointError, match="c.safetensors: cannot read checkpoint"):
        load_checkpoint(tmp_path / "c")


def test_the_warning_for_a_missing_json_points_at_the_caller(weights):
    (weights.parent / "c.json").unlink()
    with pytest.warns(UserWarning, match="it is missing") as caught:
        load_checkpoint(weights)
    assert [record.filename for record in caught] == [__file__]


def test_flatten_state_stores_a_tensors_array(rng):
    data = rng.standard_normal(3)
    arrays, tree = flatten_state("s", {"moment": Tensor(data)})
    assert tree == {"moment": {"__array__": "s.moment"}} and arrays["s.moment"] is data


def test_flatten_state_keeps_plain_dicts_and_escapes_reserved_keys():
    assert flatten_state("s", {"lr": 0.1, "betas": [0.9]}) == ({}, {"lr": 0.1, "betas": [0.9]})
    state = {"__array__": "not an array", "__tuple__": [1]}
    arrays, tree = flatten_state("s", state)
    assert tree == {"__items__": [["__array__", "not an array"], ["__tuple__", [1]]]}
    assert unflatten_state(arrays, json.loads(json.dumps(tree))) == state


@pytest.mark.parametrize("key", [True, 1.5, (1, 2), None])
def test_flatten_state_refuses_keys_json_cannot_keep(key):
    with pytest.raises(ValueError, match=rf"flatten_state: key {re.escape(repr(key))} at s.inner "
                                         "is not a str or int"):
        flatten_state("s", {"inner": {0: 1, key: 2}})


def test_unflatten_state_names_a_missing_array(rng):
    arrays, tree = flatten_state("s", {"moment": rng.standard_normal(2)})
    with pytest.raises(CheckpointError, match="refers to array 's.moment', which is missing"):
        unflatten_state({}, tree)
