"""Running a model layer by layer, and how far a map is from commuting with translation.

`layer_outputs(model, x)` runs a model's leaf layers one after another, keeping every output
(for activation maps, and for the test that `summary`'s predicted shapes equal a real forward
pass). `equivariance_error(fn, x, shift)` measures how far a map is from translation
equivariance: 0 when shifting the input shifts the output by shift / jump. For a map to class
scores (N, K) equivariance is invariance: 0 when the shifted input gets the same scores.
"""

import numpy as np

from cnnlab.analysis.summary import layer_kind, layers
from cnnlab.shapes import pair
from cnnlab.tensor import Tensor, no_grad


# ----- running a model layer by layer ----------------------------------------------------------
def layer_outputs(model, x):
    """Run `model`'s leaf layers one after another on x, keeping every output.

    Args:
        model: a Module walked as `layers(model)` walks it.
        x: (N, C, H, W) ndarray or Tensor.

    Returns:
        list of (path, output ndarray), one per leaf layer. A Linear met by a (N, C, H, W)
        input is given the input flattened, as `summary` assumes.
    """
    outputs = []
    value = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
    with no_grad():
        for path, layer in layers(model):
            if (
                layer_kind(layer) == "linear"
                and value.ndim > 2
                and value.shape[-1] != layer.in_features
            ):
                value = value.reshape(value.shape[0], -1)
            value = layer(value)
            outputs.append((path, np.asarray(value.data if isinstance(value, Tensor) else value)))
    return outputs


# ----- equivariance ----------------------------------------------------------------------------
def translate(x, shift):
    """x shifted by shift = (dy, dx) pixels on its last two axes (down/right for positive
    values), with zeros shifted in. x: (..., H, W) ndarray -> same shape."""
    x = np.asarray(x)
    out = np.zeros_like(x)
    (dy, dx), (height, width) = shift, x.shape[-2:]
    if abs(dy) >= height or abs(dx) >= width:
        return out
    source = (slice(max(0, -dy), height - max(0, dy)), slice(max(0, -dx), width - max(0, dx)))
    target = (slice(max(0, dy), height - max(0, -dy)), slice(max(0, dx), width - max(0, -dx)))
    out[(..., *target)] = x[(..., *source)]
    return out


def _call(fn, x):
    with no_grad():
        y = fn(Tensor(x))
    return np.asarray(y.data if isinstance(y, Tensor) else y, dtype=np.float64)


def equivariance_error(fn, x, shift, jump=None, nearest=False):
    """How far fn is from translation equivariance: 0 for a map that commutes with shifts.

    Args:
        fn: a Module or any callable mapping (N, C, H, W) to (N, C', H', W'), or to class
            scores (N, K), returning a Tensor or an ndarray. It is given a cnnlab Tensor
            (NumPy functions take it too, through __array__), under no_grad.
        x: (N, C, H, W) ndarray or Tensor.
        shift: (dy, dx) in input pixels, multiples of the jump on each axis.
        jump: (h, w) input pixels between neighbouring outputs, e.g. a summary record's `jump`.
            Default: floor(H / H') and floor(W / W'), exact for padded ("same") convolutions
            and pooling that divides the size, and right for valid convolutions and
            pooling's leftover rows as long as the receptive field is small beside H (a valid
            3x3 convolution, H' = H - 2, gets jump 1).
        nearest: allow a shift that is not a multiple of the jump, the output expected to move
            by the nearest whole number of outputs, round(shift / jump): how far the map is
            from any equivariance at that shift (a stride-4 patch embedding and a 1-pixel
            shift: the tokens against the unshifted ones). Default: False (ValueError).

    Returns:
        max |fn(translate(x, shift)) - translate(fn(x), shift / jump)| over the outputs at
        least a quarter of the output size away from every border, divided by max |fn(x)|;
        for class scores, max |fn(translate(x, shift)) - fn(x)| / max |fn(x)|.
    """
    x = np.asarray(x.data if isinstance(x, Tensor) else x)
    if x.ndim != 4:
        raise ValueError(f"equivariance_error: expected x of shape (N, C, H, W), got {x.shape}")
    shift = pair(shift, "shift")
    y = _call(fn, x)
    if y.ndim == 2:  # class scores: the same scores for the shifted input
        difference = np.max(np.abs(_call(fn, translate(x, shift)) - y), initial=0.0)
        scale = np.max(np.abs(y), initial=0.0)
        return float(difference / scale) if scale > 0 else float(difference)
    if y.ndim != 4:
        raise ValueError(f"equivariance_error: fn must return (N, C', H', W') or (N, K), got "
                         f"shape {y.shape}")
    if jump is None:
        jump = tuple(max(1, x.shape[axis] // y.shape[axis]) for axis in (2, 3))
    jump = pair(jump, "jump")
    if not nearest and (shift[0] % jump[0] or shift[1] % jump[1]):
        raise ValueError(
            f"equivariance_error: shift {shift} must be a multiple of the jump {jump} "
            f"(input {x.shape[2:]} -> output {y.shape[2:]}), or give nearest=True"
        )
    output_shift = tuple(int(np.floor(shift[axis] / jump[axis] + 0.5)) for axis in (0, 1))
    shifted = _call(fn, translate(x, shift))
    expected = translate(y, output_shift)
    margin_h, margin_w = y.shape[2] // 4, y.shape[3] // 4
    inner = (..., slice(margin_h, y.shape[2] - margin_h), slice(margin_w, y.shape[3] - margin_w))
    difference = np.max(np.abs(shifted[inner] - expected[inner]), initial=0.0)
    scale = np.max(np.abs(y), initial=0.0)
    return float(difference / scale) if scale > 0 else float(difference)
