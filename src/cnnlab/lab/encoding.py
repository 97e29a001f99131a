"""Arrays for the page: uint8 bytes in base64 with their shape, which the page draws with
`putImageData` as they are (it computes nothing).

    encode_unit(maps)      # values in [0, 1] (analysis.pictures.unit_scale) -> 0..255
    encode_pixels(image)   # uint8 as it is
"""

import base64

import numpy as np


def encode_pixels(array) -> dict:
    """uint8 array of any shape -> {"shape": [...], "data": base64 of its C-order bytes}."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return {"shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode()}


def encode_unit(array) -> dict:
    """Values in [0, 1] (any shape) as `encode_pixels` of round(255 * value)."""
    scaled = np.rint(np.clip(np.asarray(array, dtype=np.float64), 0, 1) * 255)
    return encode_pixels(scaled.astype(np.uint8))
