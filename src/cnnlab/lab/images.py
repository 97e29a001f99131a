"""Image files sent to the lab: read with a size cap, checked as images, converted as
`cnnlab predict` converts a file (cnnlab.data.load_image).

    body = await read_body(request)                      # TooLarge over MAX_UPLOAD_BYTES
    pixels = decode_image(body, size=(28, 28), channels=1)   # (C, H, W) uint8

An upload is refused (BadRequest) unless Pillow recognises it as an image, and before it is
decoded when it declares more than MAX_PIXELS pixels (a decompression bomb: a small file
that would unpack into gigabytes).
"""

import io
import warnings

from PIL import Image

from cnnlab.data import DatasetError, load_image
from cnnlab.lab.errors import BadRequest, TooLarge

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 64 * 1024 * 1024  # an image of 8192 x 8192; Pillow's own limit is 89 million


async def read_body(request, limit=MAX_UPLOAD_BYTES) -> bytes:
    """The request's body, refused with TooLarge as soon as it passes `limit` bytes (by its
    Content-Length, or else while it streams in)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body has {int(declared)} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body passes the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_image(body: bytes, size, channels: int):
    """An image file's bytes -> (C, H, W) uint8 at `size` (H, W) with `channels`, as
    `cnnlab predict` converts a file.

    Raises:
        BadRequest for an empty body, a body that is not an image, or a decompression bomb.
    """
    if not body:
        raise BadRequest("the body is empty: send the bytes of an image file")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(body)) as image:
                width, height = image.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise BadRequest(f"the image is too large to decode safely: {error}") from None
        except Exception as error:  # Pillow raises many kinds for data it cannot identify
            raise BadRequest(f"the body is not an image Pillow can read: {error}") from None
        if width * height > MAX_PIXELS:
            raise BadRequest(f"the image is too large to decode safely: {width} x {height} "
                             f"pixels, more than {MAX_PIXELS}")
        try:
            return load_image(io.BytesIO(body), size=tuple(size), channels=channels)
        except DatasetError as error:
            raise BadRequest(f"the body is not an image Pillow can read: "
                             f"{error.__cause__ or error}") from None
