"""Shared test helpers: the one gradient-check assertion and the one PyTorch comparison."""

import numpy as np
import torch

import cnnlab

TOLERANCE = {np.float64: 1e-8, np.float32: 2e-4}


def assert_gradcheck(fn, *arrays, eps=1e-6, atol=1e-6, rtol=1e-4):
    """Assert that fn's analytic gradients match central differences for float64 inputs."""
    inputs = [cnnlab.Tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in arrays]
    assert cnnlab.gradcheck(fn, inputs, eps=eps, atol=atol, rtol=rtol, raise_exception=True)


def relative_error(ours, reference):
    """max |ours - reference| / max |reference| (0 when both are zero)."""
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    scale = np.max(np.abs(reference)) if reference.size else 0.0
    diff = np.max(np.abs(ours - reference)) if reference.size else 0.0
    return diff / scale if scale > 0 else diff


def compare_with_torch(our_fn, torch_fn, arrays, dtype=np.float64, grad=None, seed=0):
    """Run our_fn on cnnlab tensors and torch_fn on torch tensors made from the same arrays.

    Floating arrays become tensors that require grad; others (targets) are passed as they are.
    Asserts the outputs and every input gradient (under the same random upstream gradient)
    agree within TOLERANCE[dtype], relative to the reference's magnitude.
    """
    tolerance = TOLERANCE[dtype]
    ours, theirs = [], []
    for array in arrays:
        array = np.asarray(array)
        if array.dtype.kind == "f":
            array = array.astype(dtype)
            ours.append(cnnlab.Tensor(array.copy(), requires_grad=True))
            theirs.append(torch.tensor(array.copy(), requires_grad=True))
        else:
            ours.append(array)
            theirs.append(torch.from_numpy(array.copy()))
    out, reference = our_fn(*ours), torch_fn(*theirs)
    assert out.dtype == dtype, f"output dtype {out.dtype}, expected {np.dtype(dtype)}"
    assert relative_error(out.data, reference.detach().numpy()) <= tolerance
    upstream = np.random.default_rng(seed).standard_normal(out.shape).astype(dtype)
    if grad is not None:
        upstream = grad
    out.backward(upstream)
    reference.backward(torch.from_numpy(upstream))
    for mine, their in zip(ours, theirs, strict=True):
        if isinstance(mine, cnnlab.Tensor):
            assert mine.grad is not None and mine.grad.shape == mine.shape
            assert mine.grad.dtype == dtype
            error = relative_error(mine.grad, their.grad.numpy())
            assert error <= tolerance, f"gradient relative error {error:.3g} > {tolerance}"
    return out
