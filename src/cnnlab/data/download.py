"""Fetching a dataset's official files, checked against their published checksums.

A file is streamed into a temporary file beside its destination, hashed on the way, and moved
into place (os.replace) only when its MD5 matches; otherwise nothing is left behind. The base
URL can be replaced by a mirror (an argument, or `$CNNLAB_MIRROR`); the checksums cannot.
"""

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from cnnlab.errors import DatasetError

from .registry import DatasetInfo

CHUNK_BYTES = 1 << 20
logger = logging.getLogger(__name__)


def mirror_url(info: DatasetInfo, mirror: str | None = None) -> str:
    """The base URL to download from: `mirror`, else `$CNNLAB_MIRROR`, else the official one."""
    base = mirror or os.environ.get("CNNLAB_MIRROR") or info.mirror
    if not base.startswith(("http://", "https://")):
        raise DatasetError(f"download mirror must be an http:// or https:// URL, got {base!r}")
    return base if base.endswith("/") else base + "/"


def download_file(url: str, destination: Path, md5: str, timeout: float = 60.0) -> Path:
    """Download `url` to `destination`, atomically, accepting it only if its MD5 is `md5`.

    Raises:
        DatasetError naming the URL when the download fails or the checksum differs; in both
        cases `destination` is left as it was.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as web:
            while chunk := web.read(CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != md5:
            raise DatasetError(
                f"{url}: checksum mismatch: expected MD5 {md5}, got {digest.hexdigest()}; "
                "the file was not kept (the server may be serving a different dataset)"
            )
        os.replace(temporary, destination)
    except (urllib.error.URLError, OSError) as error:
        raise DatasetError(f"{url}: download failed: {error}") from error
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return destination


def download_dataset(info: DatasetInfo, folder: Path, mirror: str | None = None) -> Path:
    """Fetch each of `info.files` missing from `folder` (files already there are kept).

    Returns:
        `folder`, now holding every file.
    """
    base = mirror_url(info, mirror)
    for remote in info.files:
        target = Path(folder) / remote.name
        if not target.exists():
            logger.info("downloading %s%s to %s", base, remote.name, target)
            download_file(base + remote.name, target, remote.md5)
    return Path(folder)
