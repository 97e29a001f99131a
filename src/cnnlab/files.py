"""Writing files so that nothing a user made is ever half-written: `atomic_write`.

    atomic_write("run/metrics.jsonl", text)          # str (UTF-8) or bytes
    with atomic_writer("run/curves.png") as handle:  # for writers that want a file object
        figure.savefig(handle, format="png")

The data goes to a new temporary file beside the target (a unique name, so two writers never
share one), is flushed to disk, and is renamed over the target: a reader sees the old file or
the new one, never a mix, and a crash leaves the old file in place. The folder is created when
missing and synced after the rename.
"""

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write(path, data) -> Path:
    """Write `data` (str as UTF-8, or bytes) to `path` atomically; returns the path."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_writer(path) as handle:
        handle.write(data)
    return Path(path)


@contextlib.contextmanager
def atomic_writer(path):
    """A binary file object whose content replaces `path` when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_file(path)
    try:
        with open(temporary, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        remove(temporary)
    sync_directory(path.parent)


def temporary_file(path) -> str:
    """The name of a new, empty temporary file beside `path` (`.NAME.XXXX.tmp`)."""
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory
    )
    os.close(descriptor)
    return temporary


def remove(path) -> None:
    """Delete `path` if it exists."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def sync_directory(directory) -> None:
    """fsync a folder, so a rename inside it survives a power cut (where the OS allows)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
