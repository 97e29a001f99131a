"""Checkpoint details: the checksum covers each array's name, dtype and shape, not only its
bytes; arrays in any memory layout and values numpy takes (lists, numbers) are stored as
they read; array names are checked."""

import numpy as np
import pytest

from cnnlab import Tensor
from cnnlab.checkpoint import content_sha256, load_checkpoint, save_checkpoint
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
