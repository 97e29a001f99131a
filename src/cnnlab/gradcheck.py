"""Numerical gradient check: central differences in float64 against backward()."""

import numpy as np

from cnnlab.tensor import Tensor, no_grad


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=False, seed=0):
    """Check the analytic gradient of `fn` against central differences, in float64.

    A random upstream gradient v (fixed by `seed`) projects fn's output to a scalar
    L = sum(fn(*inputs) * v), so every output element takes part. For each input tensor that
    requires grad, dL/dx from backward() must match (L(x + eps) - L(x - eps)) / (2 eps)
    element by element within atol + rtol * |numerical|.

    Args:
        fn: callable taking the input tensors and returning a Tensor.
        inputs: a Tensor or a sequence of Tensors, float64; those with requires_grad are checked.
        raise_exception: raise ValueError describing the worst element instead of
            returning False. Default: False.
    Returns:
        True when every gradient matches, else False.
    """
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    checked = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    for t in checked:
        if t.dtype != np.float64:
            raise ValueError(f"gradcheck: inputs must be float64, got {t.dtype} of shape {t.shape}")
    saved_grads = [t.grad for t in checked]
    for t in checked:
        t.grad = None
    out = fn(*inputs)
    upstream = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(upstream)
    analytic = [np.zeros(t.shape) if t.grad is None else t.grad.copy() for t in checked]
    for t, grad in zip(checked, saved_grads, strict=True):
        t.grad = grad

    def projected():
        with no_grad():
            return float(np.sum(fn(*inputs).data * upstream))

    for t, grad in zip(checked, analytic, strict=True):
        flat = t.data.reshape(-1)  # a view: perturbing it perturbs the input
        for i in range(flat.size):
            original = flat[i]
            flat[i] = original + eps
            plus = projected()
            flat[i] = original - eps
            minus = projected()
            flat[i] = original
            numerical = (plus - minus) / (2 * eps)
            analytical = grad.reshape(-1)[i]
            if abs(analytical - numerical) > atol + rtol * abs(numerical):
                if raise_exception:
                    raise ValueError(
                        f"gradcheck: input of shape {t.shape}, element "
                        f"{np.unravel_index(i, t.shape)}: analytic {analytical!r} vs numerical "
                        f"{numerical!r}"
                    )
                return False
    return True
