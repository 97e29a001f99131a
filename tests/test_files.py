import os

from cnnlab.files import atomic_write


def test_atomic_write_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write(target, "one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(target.parent) == ["a.txt"]
def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write(target, "old")
    class Boom:
        pass
    import pytest
    with pytest.raises(TypeError):
        atomic_write(target, Boom())
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]
