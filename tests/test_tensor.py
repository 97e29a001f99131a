"""The tensor and its graph: shapes and dtypes of gradients, accumulation, broadcasting,
no_grad, detach, releasing the graph, and elementwise/reduction/movement ops against PyTorch."""

import re
import threading

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab import Tensor

from helpers import assert_gradcheck, compare_with_torch


def randn(rng, *shape):
    return rng.standard_normal(shape)


def positive(rng, *shape):
    return rng.uniform(0.5, 2.0, shape)


def test_python_numbers_and_lists_become_float32_and_float_arrays_keep_dtype():
    assert Tensor(3.0).dtype == np.float32
    assert Tensor([[1, 2], [3, 4]]).dtype == np.float32
    assert Tensor(np.zeros(3)).dtype == np.float64
    assert Tensor(np.zeros(3, dtype=np.float32)).dtype == np.float32
    assert cnnlab.tensor(np.arange(3)).dtype.kind == "i"  # class ids stay integer


def test_mixed_precision_promotes_like_numpy_and_scalars_keep_the_tensor_dtype():
    single = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    double = Tensor(np.ones(3), requires_grad=True)
    assert (single + double).dtype == np.float64
    assert (single * 0.1).dtype == np.float32
    assert (double * 0.1).data[0] == 0.1  # the scalar is not rounded through float32
    (single + double).sum().backward()
    assert single.grad.dtype == np.float32 and double.grad.dtype == np.float64


def test_gradient_has_the_parameter_shape_under_broadcasting(rng):
    weight = Tensor(randn(rng, 4, 1), requires_grad=True)
    bias = Tensor(randn(rng, 3), requires_grad=True)
    x = Tensor(randn(rng, 2, 4, 3))
    out = (x * weight + bias).sum()
    out.backward()
    assert weight.grad.shape == (4, 1) and bias.grad.shape == (3,)
    np.testing.assert_allclose(weight.grad[:, 0], x.data.sum(axis=(0, 2)))
    np.testing.assert_allclose(bias.grad, np.full(3, 8.0))


def test_gradients_accumulate_until_zeroed(rng):
    w = Tensor(randn(rng, 3), requires_grad=True)
    (w * 2).sum().backward()
    (w * 3).sum().backward()
    np.testing.assert_array_equal(w.grad, np.full(3, 5.0))
    w.zero_grad()
    assert w.grad is None


def test_a_node_used_twice_gets_both_gradients(rng):
    x = Tensor(randn(rng, 5), requires_grad=True)
    y = x * x + x
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 1)


def test_backward_needs_an_explicit_gradient_for_non_scalars(rng):
    x = Tensor(randn(rng, 2, 2), requires_grad=True)
    with pytest.raises(RuntimeError, match="one-element"):
        (x * 2).backward()
    (x * 2).backward(np.ones((2, 2)))
    np.testing.assert_array_equal(x.grad, np.full((2, 2), 2.0))


def test_no_grad_builds_no_graph_and_detach_cuts_it(rng):
    w = Tensor(randn(rng, 3), requires_grad=True)
    with cnnlab.no_grad():
        y = w * 2
    assert not y.requires_grad and y.is_leaf
    z = (w.detach() * 2 + w).sum()
    z.backward()
    np.testing.assert_array_equal(w.grad, np.ones(3))


def _grad_mode_seen_by_another_thread(library):
    """While this thread is inside no_grad, does a second thread record a graph? And does a
    thread started while no_grad is on begin with grad mode on?"""
    inside, checked, seen = threading.Event(), threading.Event(), {}

    def other():
        assert inside.wait(timeout=30)
        x = library.ones(2, requires_grad=True) if library is torch else Tensor(np.ones(2), True)
        seen["records"] = (x * 2).requires_grad
        seen["enabled"] = library.is_grad_enabled()
        checked.set()

    def started_inside():
        seen["new thread enabled"] = library.is_grad_enabled()

    thread = threading.Thread(target=other)
    thread.start()
    with library.no_grad():
        inside.set()
        assert checked.wait(timeout=30)
        assert not library.is_grad_enabled()
        late = threading.Thread(target=started_inside)
        late.start()
        late.join(timeout=30)
    thread.join(timeout=30)
    assert library.is_grad_enabled()
    return seen


def test_grad_mode_belongs_to_each_thread_as_in_torch():
    expected = {"records": True, "enabled": True, "new thread enabled": True}
    assert _grad_mode_seen_by_another_thread(torch) == expected
    assert _grad_mode_seen_by_another_thread(cnnlab) == expected


def test_the_graph_is_released_after_backward_unless_retained(rng):
    w = Tensor(randn(rng, 3), requires_grad=True)
    loss = (w.exp() * w).sum()
    loss.backward(retain_graph=True)
    first = w.grad.copy()
    loss.backward()
    np.testing.assert_allclose(w.grad, 2 * first)
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        loss.backward()


def _shared_subgraph(x, retain_graph):
    """y = 3x feeds two losses; backward through the first, then the second."""
    y = x * 3
    first, second = (y * 2).sum(), (y * 5).sum()
    first.backward(retain_graph=retain_graph)
    second.backward()
    return y


def test_a_later_backward_through_a_freed_shared_subgraph_raises_as_torch():
    theirs = torch.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True") as torch_error:
        _shared_subgraph(theirs, retain_graph=False)
    ours = Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True") as our_error:
        _shared_subgraph(ours, retain_graph=False)
    assert str(our_error.value).startswith(str(torch_error.value)[:40])
    np.testing.assert_array_equal(ours.grad, theirs.grad.numpy())  # the first backward's alone


def test_retain_graph_keeps_a_shared_subgraph_so_both_gradients_add_as_torch():
    theirs = torch.ones(2, requires_grad=True)
    torch_hidden = _shared_subgraph(theirs, retain_graph=True)
    ours = Tensor(np.ones(2), requires_grad=True)
    hidden = _shared_subgraph(ours, retain_graph=True)
    np.testing.assert_array_equal(ours.grad, theirs.grad.numpy())  # 3 * (2 + 5) = 21
    assert hidden.grad is None and not hidden.is_leaf  # as torch: freed, still not a leaf
    assert not torch_hidden.is_leaf


def test_a_freed_node_deep_in_the_graph_raises_and_shared_leaves_alone_still_work(rng):
    x = Tensor(randn(rng, 3), requires_grad=True)
    hidden = (x.exp() * 2).tanh()
    hidden.sum().backward()
    before = x.grad.copy()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        (hidden.relu() + x).sum().backward()  # reaches x directly and the freed tanh node
    np.testing.assert_array_equal(x.grad, before)  # nothing was accumulated
    (x * 2).sum().backward()  # graphs that share only the leaf x
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, before + 2 + 2 * x.data)


def test_retain_grad_keeps_the_gradient_of_an_intermediate_tensor(rng):
    x = Tensor(randn(rng, 4), requires_grad=True)
    hidden = (x * 3).retain_grad()
    other = x * 2  # not retained: no .grad, as torch
    (hidden * hidden + other).sum().backward()
    np.testing.assert_allclose(hidden.grad, 2 * hidden.data)
    assert other.grad is None


TRUTH_CASES = [np.float32(0.0), np.float32(-2.5), np.ones((1,)), np.zeros((1, 1)),
               np.array([True]), np.arange(3.0), np.zeros((0,)), np.ones((2, 2))]  # fmt: skip


@pytest.mark.parametrize("array", TRUTH_CASES, ids=[str(np.shape(a)) for a in TRUTH_CASES])
def test_truth_value_is_torchs(array):
    try:
        expected = bool(torch.tensor(array))
    except RuntimeError as torch_error:
        with pytest.raises(RuntimeError, match="ambiguous") as our_error:
            bool(Tensor(array))
        assert str(our_error.value) == str(torch_error)
    else:
        assert bool(Tensor(array)) is expected


def test_comparisons_give_tensors_whose_one_element_truth_is_their_value():
    t = Tensor(3.0)
    assert isinstance(t > 2, Tensor) and (t > 2).dtype == np.bool_
    assert (t > 2) and not (t < 2) and (t == 3.0) and bool(t != 2) == bool(torch.tensor(3.0) != 2)
    with pytest.raises(RuntimeError, match="ambiguous"):
        if Tensor([1.0, 2.0]) == Tensor([1.0, 2.0]):
            pass


def test_tensors_hash_by_identity_so_containers_behave_as_with_torch():
    for make in (Tensor, torch.tensor):
        one, same, other = make(1.0), make(1.0), make(2.0)
        assert one in [one] and one in [same] and one not in [other]  # one element: by value
        assert len({one, same, other}) == 3 and {one: "a", same: "b"}[one] == "a"
        pair = make([1.0, 2.0])
        assert pair in [pair] and hash(pair) == hash(pair)  # identity comes first
        with pytest.raises(RuntimeError, match="ambiguous"):
            pair in [make([1.0, 2.0])]  # noqa: B015 (the comparison is the test)


def test_only_floating_tensors_require_grad():
    with pytest.raises(ValueError, match="floating"):
        Tensor(np.arange(3), requires_grad=True)


BINARY = [
    ("add", lambda a, b: a + b),
    ("sub", lambda a, b: a - b),
    ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b),
    ("matmul", lambda a, b: a @ b),
    ("maximum", lambda a, b: a.maximum(b)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,op", BINARY)
def test_binary_ops_match_torch_with_broadcasting(rng, name, op, dtype):
    if name == "matmul":
        shapes = [((2, 3, 4), (4, 5)), ((4,), (4, 2)), ((3, 4), (4,)), ((2, 1, 4, 3), (5, 3, 2)),
                  ((2, 3, 4), (4,)), ((4,), (2, 4, 3))]  # a 1-D side against a batch
    else:
        shapes = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((), (2, 2)),
                  ((3, 1), (3, 2)), ((5, 1), (1, 5, 4))]  # size-1 axes against 2, and leading
    for shape_a, shape_b in shapes:
        b = positive(rng, *shape_b) if name == "div" else randn(rng, *shape_b)
        compare_with_torch(op, op, [randn(rng, *shape_a), b], dtype)


UNARY = [
    ("neg", lambda a: -a, lambda a: -a, randn),
    ("exp", lambda a: a.exp(), torch.exp, randn),
    ("log", lambda a: a.log(), torch.log, positive),
    ("sqrt", lambda a: a.sqrt(), torch.sqrt, positive),
    ("pow", lambda a: a**3, lambda a: a**3, randn),
    ("rpow", lambda a: 2.0**a, lambda a: 2.0**a, randn),
    ("relu", lambda a: a.relu(), torch.relu, randn),
    ("sigmoid", lambda a: a.sigmoid(), torch.sigmoid, randn),
    ("tanh", lambda a: a.tanh(), torch.tanh, randn),
    ("sum", lambda a: a.sum(), torch.sum, randn),
    ("sum1", lambda a: a.sum(axis=1), lambda a: a.sum(dim=1), randn),
    ("sum_keep", lambda a: a.sum(axis=(0, 2), keepdims=True), lambda a: a.sum((0, 2), True), randn),
    ("sum_negative", lambda a: a.sum(axis=-1), lambda a: a.sum(dim=-1), randn),
    ("sum_unordered", lambda a: a.sum(axis=(1, 0)), lambda a: a.sum(dim=(1, 0)), randn),
    ("mean", lambda a: a.mean(), torch.mean, randn),
    ("mean0", lambda a: a.mean(axis=0), lambda a: a.mean(dim=0), randn),
    ("mean_dim", lambda a: a.mean(dim=1, keepdim=True), lambda a: a.mean(1, True), randn),
    ("sum_list", lambda a: a.sum(dim=[0, 2]), lambda a: a.sum(dim=[0, 2]), randn),
    ("max_dim", lambda a: a.max(dim=0), lambda a: a.amax(dim=0), randn),
    ("min", lambda a: a.min(), torch.amin, randn),
    ("min_axis", lambda a: a.min(axis=1), lambda a: a.amin(dim=1), randn),
    ("abs", lambda a: a.abs(), torch.abs, randn),
    ("max", lambda a: a.max(), torch.amax, randn),
    ("max2", lambda a: a.max(axis=2), lambda a: a.amax(dim=2), randn),
    ("max_negative", lambda a: a.max(axis=-2), lambda a: a.amax(dim=-2), randn),
    ("min1", lambda a: a.min(dim=1, keepdim=True), lambda a: a.amin(1, True), randn),
    ("reshape", lambda a: a.reshape(4, 6), lambda a: a.reshape(4, 6), randn),
    ("reshape_flat", lambda a: a.reshape(24), lambda a: a.reshape(24), randn),
    ("view", lambda a: a.view(6, 4), lambda a: a.view(6, 4), randn),
    ("flatten", lambda a: a.flatten(1), lambda a: a.flatten(1), randn),
    ("flatten_all", lambda a: a.flatten(), lambda a: a.flatten(), randn),
    ("flatten_front", lambda a: a.flatten(0, 1), lambda a: a.flatten(0, 1), randn),
    ("transpose", lambda a: a.transpose(0, 2), lambda a: a.transpose(0, 2), randn),
    ("transpose01", lambda a: a.transpose(0, 1), lambda a: a.transpose(0, 1), randn),
    ("transpose_all", lambda a: a.transpose(), lambda a: a.permute(2, 1, 0), randn),
    ("permute", lambda a: a.permute(2, 0, 1), lambda a: a.permute(2, 0, 1), randn),
    ("slice", lambda a: a[1:, ::2, 1], lambda a: a[1:, ::2, 1], randn),
    ("index", lambda a: a[[0, 1, 0]], lambda a: a[[0, 1, 0]], randn),
    ("log_softmax", lambda a: a.log_softmax(1), lambda a: a.log_softmax(1), randn),
    ("softmax", lambda a: a.softmax(-1), lambda a: a.softmax(-1), randn),
    ("softmax_default", lambda a: a.softmax(), lambda a: a.softmax(-1), randn),
    ("log_softmax_default", lambda a: a.log_softmax(), lambda a: a.log_softmax(-1), randn),
    ("index_tensor", lambda a: a[Tensor(np.array([1, 0, 1]))], lambda a: a[[1, 0, 1]], randn),
    ("index_tuple", lambda a: a[Tensor(np.array([0, 1])), 2], lambda a: a[[0, 1], 2], randn),
    ("rsub", lambda a: 3.0 - a, lambda a: 3.0 - a, randn),
    ("radd", lambda a: 3.0 + a, lambda a: 3.0 + a, randn),
    ("rmul", lambda a: 3.0 * a, lambda a: 3.0 * a, randn),
    ("rtruediv", lambda a: 3.0 / a, lambda a: 3.0 / a, positive),
    ("rmatmul", lambda a: np.ones((5, 3), a.dtype) @ a[0],
     lambda a: torch.ones(5, 3, dtype=a.dtype) @ a[0], randn),
    ("pow_tensor", lambda a: a ** Tensor(np.array(2.5, a.dtype)),
     lambda a: a ** torch.tensor(2.5, dtype=a.dtype), positive),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,ours,theirs,make", UNARY, ids=[u[0] for u in UNARY])
def test_unary_ops_match_torch(rng, name, ours, theirs, make, dtype):
    compare_with_torch(ours, theirs, [make(rng, 2, 3, 4)], dtype)


@pytest.mark.parametrize("name,ours,theirs,make", UNARY, ids=[u[0] for u in UNARY])
def test_unary_ops_pass_gradcheck(rng, name, ours, theirs, make):
    assert_gradcheck(ours, make(rng, 2, 3, 4))


@pytest.mark.parametrize("name,op", BINARY)
def test_binary_ops_pass_gradcheck(rng, name, op):
    b = positive(rng, 4, 3) if name == "div" else randn(rng, 4, 3)
    a = randn(rng, 2, 4) if name == "matmul" else randn(rng, 2, 4, 3)
    assert_gradcheck(op, a, b)


def test_max_shares_the_gradient_between_ties_like_torch_amax():
    data = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    compare_with_torch(lambda a: a.max(axis=1), lambda a: a.amax(dim=1), [data])


def test_gradcheck_returns_false_for_a_wrong_gradient(rng):
    from cnnlab.ops.function import Function

    class WrongSquare(Function):
        def forward(self, a):
            self.a = a
            return a * a

        def backward(self, grad_output):
            return (grad_output * self.a,)  # should be 2 * a

    x = Tensor(randn(rng, 3), requires_grad=True)
    assert not cnnlab.gradcheck(lambda t: Tensor._make(WrongSquare, t), [x])
    assert cnnlab.gradcheck(lambda t: t * t, [x])


def test_gradcheck_insists_on_float64():
    with pytest.raises(ValueError, match="float64"):
        single = Tensor(np.ones(2, dtype=np.float32), requires_grad=True)
        cnnlab.gradcheck(lambda t: t * 2, [single])


# ----- cases the comparisons above do not reach (each one a bug planted by mutation.sh) --------
@pytest.mark.parametrize("name,op", BINARY)
@pytest.mark.parametrize("which", [0, 1])
def test_binary_ops_give_a_gradient_to_the_one_input_that_needs_it(rng, name, op, which):
    arrays = [randn(rng, 3, 4), positive(rng, 4, 2) if name == "matmul" else positive(rng, 3, 4)]
    ours = [Tensor(a.copy(), requires_grad=k == which) for k, a in enumerate(arrays)]
    theirs = [torch.tensor(a.copy(), requires_grad=k == which) for k, a in enumerate(arrays)]
    out = op(*ours)
    upstream = randn(rng, *out.shape)
    out.backward(upstream)
    op(*theirs).backward(torch.from_numpy(upstream))
    np.testing.assert_allclose(ours[which].grad, theirs[which].grad.numpy(), rtol=1e-12)
    assert ours[1 - which].grad is None


def test_maximum_splits_the_gradient_of_ties_like_torch():
    a = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]])
    b = np.array([[1.0, 3.0, 2.0], [0.0, -1.0, 4.0]])  # three ties
    compare_with_torch(lambda x, y: x.maximum(y), torch.maximum, [a, b])


def test_relu_of_zero_and_of_a_scalar_has_torchs_gradient():
    compare_with_torch(lambda x: x.relu(), torch.relu, [np.array([-1.0, 0.0, 0.5, 2.0])])
    for value in (-0.5, 0.0, 0.5):  # a 0-d tensor takes relu's unsplit path
        compare_with_torch(lambda x: x.relu(), torch.relu, [np.array(value)], grad=np.array(3.0))


def test_matmul_gradients_come_back_in_the_broadcast_batch_shape():
    """The primitive's contract (the tensor then sums them to each input's shape): a 1-D side
    loses its promoted axis, a batch stays."""
    from cnnlab.ops.matmul import MatMul

    for a_shape, b_shape, a_grad, b_grad in [
        ((4,), (4, 3), (4,), (4, 3)),
        ((4,), (2, 4, 3), (2, 4), (2, 4, 3)),
        ((2, 3, 4), (4,), (2, 3, 4), (2, 4)),
        ((3, 4), (4,), (3, 4), (4,)),
    ]:
        function = MatMul([True, True])
        out = function.forward(np.ones(a_shape), np.ones(b_shape))
        grads = function.backward(np.ones(out.shape))
        assert (grads[0].shape, grads[1].shape) == (a_grad, b_grad)


def test_the_function_base_class_insists_on_forward_and_backward():
    from cnnlab.ops.function import Function

    with pytest.raises(NotImplementedError):
        Function([True]).forward(np.ones(2))
    with pytest.raises(NotImplementedError):
        Function([True]).backward(np.ones(2))


# ----- the tensor's interface: construction, backward's contract, operators ---------------------
def test_construction_keeps_or_converts_the_dtype():
    assert Tensor(Tensor(np.zeros(2))).dtype == np.float64  # a tensor's array is kept as it is
    assert Tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert np.asarray(Tensor(np.zeros(2)), dtype=np.float32).dtype == np.float32
    assert np.asarray(Tensor(np.zeros(2, np.float32))).dtype == np.float32
    assert (Tensor(np.arange(3)) * 0.5).data.tolist() == [0.0, 0.5, 1.0]  # not 0.5 cast to int


def test_backward_checks_its_arguments():
    with pytest.raises(RuntimeError, match="does not require grad and has no graph"):
        Tensor(np.ones(2)).backward(np.ones(2))
    x = Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(ValueError, match=r"backward: grad has shape \(3,\), expected \(2,\)"):
        (x * 2).backward(np.ones(3))
    (x * 2).backward([1.0, 2.0])  # any array-like: a list
    (x * 2).backward(Tensor(np.ones(2)))  # or a tensor
    np.testing.assert_array_equal(x.grad, [4.0, 6.0])


def test_gradients_are_owned_not_shared():
    a, b = Tensor(np.ones(3), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    upstream = np.full(3, 2.0)
    (a + b).backward(upstream)  # Add hands the same upstream array to both inputs
    (a * 5).sum().backward()  # accumulates into a.grad only
    np.testing.assert_array_equal(a.grad, [7.0, 7.0, 7.0])
    np.testing.assert_array_equal(b.grad, [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(upstream, [2.0, 2.0, 2.0])


def test_a_shared_intermediate_sends_back_the_sum_of_its_gradients():
    """y feeds two branches that meet again: its own gradient must be complete before it is
    passed on to w (a diamond in the graph)."""
    w = Tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
    theirs = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    for weight in (w, theirs):
        y = weight * 3
        ((y * y) + y.exp() * y).sum().backward()
    np.testing.assert_allclose(w.grad, theirs.grad.numpy(), rtol=1e-12)


def test_comparisons_give_boolean_tensors_like_numpy():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])
    for ours, theirs in [
        (Tensor(a) == Tensor(b), a == b), (Tensor(a) != b, a != b), (Tensor(a) < b, a < b),
        (Tensor(a) <= Tensor(b), a <= b), (Tensor(a) > b, a > b), (Tensor(a) >= b, a >= b),
    ]:
        assert ours.dtype == bool and ours.data.tolist() == theirs.tolist()
    assert (Tensor(a) > 1.5).data.tolist() == [False, True, True]  # against a number
    t = Tensor(a)
    assert {t: 1}[t] == 1 and hash(t) == hash(t)  # usable as a key despite ==


def test_an_ndarray_on_the_left_defers_to_the_tensor(rng):
    x = Tensor(randn(rng, 3), requires_grad=True)
    out = np.full(3, 2.0) * x + np.ones(3)
    assert isinstance(out, Tensor)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0, 2.0])


def test_argmax_and_requires_grad_and_repr():
    a = Tensor(np.array([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]]))
    assert a.argmax().item() == 3
    assert a.argmax(axis=0).data.tolist() == [1, 0, 1]
    assert a.argmax(dim=1).data.tolist() == [1, 0]
    assert a.requires_grad_().requires_grad and not a.requires_grad_(False).requires_grad
    assert repr(Tensor(np.array([1.0, 2.0]))) == "tensor([1., 2.])"
    assert repr(Tensor(np.array([1.0]), requires_grad=True)) == "tensor([1.], requires_grad=True)"


def test_flatten_and_permute_of_small_ranks():
    assert Tensor(np.array(3.0)).flatten().shape == (1,)  # a scalar becomes one element
    assert Tensor(np.arange(4.0)).flatten().shape == (4,)
    assert Tensor(np.arange(4.0)).permute(0).shape == (4,)


def test_no_grad_as_a_decorator_keeps_the_function_name_and_docstring(rng):
    @cnnlab.no_grad()
    def double(tensor):
        """Twice the tensor."""
        return tensor * 2

    assert double.__name__ == "double" and double.__doc__ == "Twice the tensor."
    assert not double(Tensor(randn(rng, 2), requires_grad=True)).requires_grad


def test_a_gradient_of_fewer_dimensions_than_its_input_is_an_error():
    from cnnlab.ops.function import Function

    class Shrink(Function):
        def forward(self, a):
            return a.sum(axis=0)

        def backward(self, grad_output):
            return (grad_output,)  # should be broadcast back to a's shape (2, 3)

    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"<Shrink>: gradient shape \(3,\) for input of "
                                           r"\(2, 3\)"):
        Tensor._make(Shrink, x).sum().backward()


def test_abs_of_zero_is_zero_with_torchs_zero_gradient():
    compare_with_torch(lambda x: x.abs(), torch.abs, [np.array([0.0, -2.0, 3.0])])


@pytest.mark.parametrize("needs", [[True, False, False], [False, True, False],
                                   [False, False, True], [False, True, True]])
def test_linear_computes_only_the_gradients_asked_for(rng, needs):
    """Each gradient from its own formula, and None where nobody needs it (a first layer's
    input needs none)."""
    from cnnlab.ops.matmul import Linear

    x, weight = rng.standard_normal((5, 4)), rng.standard_normal((3, 4))
    bias = rng.standard_normal(3)
    upstream = rng.standard_normal((5, 3))
    function = Linear(needs)
    function.forward(x, weight, bias)
    grads = function.backward(upstream)
    expected = [upstream @ weight, upstream.T @ x, upstream.sum(axis=0)]
    for need, grad, reference in zip(needs, grads, expected, strict=True):
        if need:
            assert np.allclose(grad, reference, rtol=1e-12, atol=0)
        else:
            assert grad is None


def test_star_import_of_the_tensor_module_gives_its_public_names():
    namespace = {}
    exec("from cnnlab.tensor import *", namespace)  # noqa: S102 - a fixed import statement
    assert sorted(set(namespace) - {"__builtins__"}) == [
        "Tensor", "is_grad_enabled", "no_grad", "tensor"]
    assert namespace["Tensor"] is cnnlab.Tensor and namespace["tensor"] is cnnlab.tensor


def test_cat_as_torch_with_its_checks(rng):
    """Default dim 0, negative dims, arrays among tensors, and each refusal with its text."""
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((4, 3))
    joined = cnnlab.cat([cnnlab.Tensor(a), b])  # an ndarray is taken as a constant tensor
    np.testing.assert_array_equal(joined.data, torch.cat([torch.tensor(a), torch.tensor(b)]))
    c = rng.standard_normal((2, 5))
    np.testing.assert_array_equal(cnnlab.cat([a, c], dim=-1).data, np.concatenate([a, c], 1))
    np.testing.assert_array_equal(cnnlab.cat([a, c], dim=-2 + 3).data, np.concatenate([a, c], 1))
    with pytest.raises(ValueError, match="cat: expected a non-empty sequence of tensors"):
        cnnlab.cat([])
    for dim in (2, -3):
        with pytest.raises(ValueError, match=re.escape(
                f"cat: dim {dim} out of range for tensors of shape (2, 3)")):
            cnnlab.cat([a, a], dim=dim)
    np.testing.assert_array_equal(cnnlab.cat([a, b], dim=-2).data, np.concatenate([a, b]))
    for bad in ([a, c], [a, b, c], [a, a[None]], [c, a, a]):
        with pytest.raises(ValueError, match="cat: tensors must agree on every axis but dim 0"):
            cnnlab.cat(bad)


def test_expand_takes_sizes_as_arguments_or_one_sequence(rng):
    token = cnnlab.Tensor(rng.standard_normal((1, 1, 4)))
    reference = torch.tensor(token.data)
    for sizes in [(3, -1, -1)], [((3, -1, -1),)], [([3, 1, 4],)], [(2, 3, 1, 4)]:
        args = sizes[0]
        ours = token.expand(*args) if isinstance(args[0], int) else token.expand(args[0])
        theirs = reference.expand(*args) if isinstance(args[0], int) else reference.expand(args[0])
        assert ours.shape == tuple(theirs.shape)
        np.testing.assert_array_equal(ours.data, theirs.numpy())
    single = cnnlab.Tensor(np.ones(1))
    assert single.expand(5).shape == (5,)  # one int is a size, not a sequence


def test_cat_of_one_tensor_and_expand_refusals(rng):
    a = rng.standard_normal((2, 3))
    np.testing.assert_array_equal(cnnlab.cat([a]).data, a)
    token = cnnlab.Tensor(np.ones((1, 4)))
    with pytest.raises(ValueError, match=re.escape("expand: 1 sizes for a tensor of shape (1, 4)")):
        token.expand(4)
    with pytest.raises(ValueError, match=re.escape(
            "expand: -1 is only allowed for existing axes, got (-1, 3, 4)")):
        token.expand(-1, 3, 4)
