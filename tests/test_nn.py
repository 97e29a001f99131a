"""cnnlab.nn layers against torch.nn with copied weights: outputs, the input gradient and every
parameter gradient, in training and eval mode; BatchNorm's running statistics after steps;
Dropout's scaling; PyTorch's default initialisation."""

import math

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab import nn
from cnnlab.nn import functional as F
from torch_mirror import torch_twin

from helpers import assert_gradcheck, relative_error

TOLERANCE = 1e-10  # float64


def run_both(layer, x, rng, upstream=None):
    """Forward and backward through `layer` (float64) and its torch twin; returns both sides."""
    layer.double()
    twin = torch_twin(layer)
    ours_x = cnnlab.Tensor(x.copy(), requires_grad=True)
    their_x = torch.tensor(x.copy(), requires_grad=True)
    ours, theirs = layer(ours_x), twin(their_x)
    upstream = rng.standard_normal(ours.shape) if upstream is None else upstream
    ours.backward(upstream)
    theirs.backward(torch.from_numpy(upstream))
    return (ours, ours_x), (theirs, their_x, twin)


def assert_matches_torch(layer, x, rng, train=True):
    layer.train(train)
    (ours, ours_x), (theirs, their_x, twin) = run_both(layer, x, rng)
    assert ours.shape == tuple(theirs.shape)
    assert relative_error(ours.data, theirs.detach().numpy()) < TOLERANCE
    assert relative_error(ours_x.grad, their_x.grad.numpy()) < TOLERANCE
    their_params = dict(twin.named_parameters())
    assert [name for name, _ in layer.named_parameters()] == list(their_params)
    for name, parameter in layer.named_parameters():
        error = relative_error(parameter.grad, their_params[name].grad.numpy())
        assert error < TOLERANCE, f"{name}: gradient relative error {error:.3g}"
    their_state = twin.state_dict()
    for name, value in layer.state_dict().items():
        assert relative_error(value, their_state[name].numpy()) < TOLERANCE, name
    return ours


def images(rng, n=3, c=2, h=9, w=8):
    return rng.standard_normal((n, c, h, w))


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(rng, bias, train):
    assert_matches_torch(nn.Linear(7, 4, bias=bias), rng.standard_normal((5, 7)), rng, train)


@pytest.mark.parametrize(
    "kernel_size, stride, padding",
    [(3, 1, 0), (3, 1, 1), ((3, 2), (2, 1), (1, 0)), (5, 2, 2), (1, 1, 0)],
)
def test_conv2d(rng, kernel_size, stride, padding):
    conv = nn.Conv2d(2, 4, kernel_size, stride=stride, padding=padding)
    assert_matches_torch(conv, images(rng), rng)
    conv = nn.Conv2d(2, 3, kernel_size, stride, padding, bias=False)
    assert_matches_torch(conv, images(rng), rng)


@pytest.mark.parametrize("pool", [nn.MaxPool2d, nn.AvgPool2d])
@pytest.mark.parametrize("kernel_size, stride, padding", [(2, None, 0), (3, 2, 1), ((2, 3), 1, 0)])
def test_pools(rng, pool, kernel_size, stride, padding):
    assert_matches_torch(pool(kernel_size, stride, padding), images(rng), rng)


@pytest.mark.parametrize(
    "layer", [nn.ReLU(), nn.LeakyReLU(), nn.LeakyReLU(0.2), nn.Tanh(), nn.Sigmoid(),
              nn.Flatten(), nn.Flatten(2), nn.Identity()],
    ids=repr,
)
@pytest.mark.parametrize("train", [True, False])
def test_activations_and_flatten(rng, layer, train):
    assert_matches_torch(layer, images(rng) * 3, rng, train)


@pytest.mark.parametrize(
    "layer, shape",
    [
        (nn.BatchNorm1d(4), (6, 4)),
        (nn.BatchNorm1d(4, momentum=0.3), (5, 4, 3)),
        (nn.BatchNorm1d(4, momentum=None), (6, 4)),
        (nn.BatchNorm2d(3), (4, 3, 5, 6)),
        (nn.BatchNorm2d(3, eps=1e-3, affine=False), (2, 3, 4, 4)),
        (nn.BatchNorm2d(3, track_running_stats=False), (2, 3, 4, 4)),
    ],
    ids=repr,
)
def test_batchnorm_training_steps_then_eval(rng, layer, shape):
    """Three training steps (output, gradients, running stats as torch), then eval mode."""
    layer.double()
    if layer.affine:  # non-trivial scale and shift
        layer.weight.data[...] = rng.uniform(0.5, 2.0, layer.num_features)
        layer.bias.data[...] = rng.standard_normal(layer.num_features)
    twin = torch_twin(layer)
    for step in range(4):
        train = step < 3
        layer.train(train), twin.train(train)
        x = rng.standard_normal(shape) * 2 + 1
        ours_x = cnnlab.Tensor(x, requires_grad=True)
        their_x = torch.tensor(x, requires_grad=True)
        ours, theirs = layer(ours_x), twin(their_x)
        upstream = rng.standard_normal(shape)
        ours.backward(upstream)
        theirs.backward(torch.from_numpy(upstream))
        assert relative_error(ours.data, theirs.detach().numpy()) < TOLERANCE
        assert relative_error(ours_x.grad, their_x.grad.numpy()) < 1e-9
        for name, parameter in twin.named_parameters():
            assert relative_error(getattr(layer, name).grad, parameter.grad.numpy()) < 1e-9
            getattr(layer, name).grad, parameter.grad = None, None
        their_state = twin.state_dict()
        assert list(layer.state_dict()) == list(their_state)
        for name, value in layer.state_dict().items():
            assert value.dtype == their_state[name].numpy().dtype, name
            assert relative_error(value, their_state[name].numpy()) < TOLERANCE, name
    if layer.track_running_stats:
        assert int(layer.num_batches_tracked) == 3


def test_batchnorm_buffers_are_float32_with_an_int64_counter(rng):
    layer = nn.BatchNorm2d(5)
    state = layer.state_dict()
    assert list(state) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert state["running_mean"].dtype == np.float32 and state["running_var"].dtype == np.float32
    counter = state["num_batches_tracked"]
    assert counter.dtype == np.int64 and counter.shape == ()
    assert [name for name, _ in layer.named_buffers()] == ["running_mean", "running_var",
                                                           "num_batches_tracked"]
    layer(cnnlab.Tensor(rng.standard_normal((2, 5, 3, 3)).astype(np.float32)))
    assert layer.running_mean.dtype == np.float32 and int(layer.num_batches_tracked) == 1


def test_batchnorm_rejects_one_value_per_channel_in_training_and_bad_shapes():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(cnnlab.Tensor(np.ones((1, 3))))
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected input of shape \(N, C, H, W\)"):
        nn.BatchNorm2d(3)(cnnlab.Tensor(np.ones((2, 4, 3, 3))))
    assert nn.BatchNorm1d(3).eval()(cnnlab.Tensor(np.ones((1, 3)))).shape == (1, 3)


def test_dropout_scales_kept_values_and_is_the_identity_in_eval():
    layer = nn.Dropout(0.25, generator=np.random.default_rng(0))
    x = cnnlab.Tensor(np.ones((200, 100)), requires_grad=True)
    out = layer(x)
    kept = out.data != 0
    assert np.allclose(out.data[kept], 1 / 0.75)
    assert abs(kept.mean() - 0.75) < 0.01
    out.backward(np.ones(out.shape))
    assert np.array_equal(x.grad, out.data)  # the gradient goes through the same mask
    layer.eval()
    assert layer(x) is x or np.array_equal(layer(x).data, x.data)
    torch_eval = torch.nn.Dropout(0.25).eval()(torch.ones(3, 4))
    assert np.array_equal(nn.Dropout(0.25).eval()(cnnlab.Tensor(np.ones((3, 4)))).data,
                          torch_eval.numpy())


def test_dropout_uses_the_default_generator_at_call_time():
    layer = nn.Dropout(0.5)
    x = cnnlab.Tensor(np.ones((10, 10)))
    cnnlab.manual_seed(7)
    first = layer(x).data
    cnnlab.manual_seed(7)
    assert np.array_equal(layer(x).data, first)


@pytest.mark.parametrize(
    "make, fan_in",
    [(lambda g: nn.Linear(300, 200, generator=g), 300),
     (lambda g: nn.Conv2d(16, 64, 5, generator=g), 16 * 25)],
)
def test_default_initialisation_is_pytorchs(make, fan_in):
    layer = make(np.random.default_rng(0))
    bound = 1 / math.sqrt(fan_in)
    for values in (layer.weight.data, layer.bias.data):
        assert values.dtype == np.float32
        assert np.abs(values).max() <= bound
        assert values.max() > 0.9 * bound and values.min() < -0.9 * bound  # both ends reached
    # U(-b, b) has variance b^2 / 3; torch's layer of the same size draws the same distribution
    assert abs(layer.weight.data.var() / (bound**2 / 3) - 1) < 0.05
    reference = torch.nn.Linear(300, 200) if isinstance(layer, nn.Linear) else (
        torch.nn.Conv2d(16, 64, 5))
    assert abs(reference.weight.detach().numpy().var() / layer.weight.data.var() - 1) < 0.05


def test_initialisation_is_seedable_and_every_filter_differs():
    cnnlab.manual_seed(11)
    first = nn.Conv2d(3, 8, 3).weight.data
    cnnlab.manual_seed(11)
    again = nn.Conv2d(3, 8, 3).weight.data
    assert np.array_equal(first, again)
    assert not np.array_equal(first, nn.Conv2d(3, 8, 3).weight.data)
    filters = first.reshape(8, -1)
    assert len({row.tobytes() for row in filters}) == 8
    generator_a, generator_b = np.random.default_rng(5), np.random.default_rng(5)
    assert np.array_equal(nn.Linear(4, 3, generator=generator_a).weight.data,
                          nn.Linear(4, 3, generator=generator_b).weight.data)


@pytest.mark.parametrize(
    "scheme, expected_std",
    [
        (lambda w, g: nn.init.kaiming_uniform_(w, generator=g), math.sqrt(2 / 400)),
        (lambda w, g: nn.init.kaiming_normal_(w, generator=g), math.sqrt(2 / 400)),
        (lambda w, g: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu",
                                              generator=g), math.sqrt(2 / 800)),
        (lambda w, g: nn.init.xavier_uniform_(w, generator=g), math.sqrt(2 / 1200)),
        (lambda w, g: nn.init.xavier_normal_(w, gain=2.0, generator=g), 2 * math.sqrt(2 / 1200)),
        (lambda w, g: nn.init.normal_(w, 0.0, 0.3, generator=g), 0.3),
    ],
)
def test_init_schemes_have_their_standard_deviations(scheme, expected_std):
    weight = nn.Parameter(np.zeros((32, 16, 5, 5), dtype=np.float32))  # fan_in 400, fan_out 800
    assert scheme(weight, np.random.default_rng(0)) is weight
    assert weight.dtype == np.float32
    assert abs(weight.data.std() / expected_std - 1) < 0.03
    assert abs(weight.data.mean()) < 0.05 * expected_std + 1e-3


def test_init_constant_zeros_gain_and_errors():
    weight = nn.Parameter(np.ones((3, 4)))
    assert np.all(nn.init.zeros_(weight).data == 0)
    assert np.all(nn.init.constant_(weight, 0.5).data == 0.5)
    assert np.all(nn.init.ones_(weight).data == 1)
    for name in ("linear", "relu", "tanh", "sigmoid", "leaky_relu"):
        assert nn.init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    assert nn.init.calculate_gain("leaky_relu", 0.2) == pytest.approx(
        torch.nn.init.calculate_gain("leaky_relu", 0.2))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        nn.init.xavier_uniform_(nn.Parameter(np.ones(3)))
    with pytest.raises(ValueError, match="mode"):
        nn.init.kaiming_uniform_(weight, mode="fan_middle")


def test_layer_arguments_are_validated_by_name():
    with pytest.raises(ValueError, match="Linear: in_features must be a positive int, got 0"):
        nn.Linear(0, 3)
    with pytest.raises(ValueError, match="Conv2d: kernel_size"):
        nn.Conv2d(1, 2, (3, 3, 3))
    with pytest.raises(ValueError, match="padding"):
        nn.Conv2d(1, 2, 3, padding=-1)
    with pytest.raises(ValueError, match="Dropout: p must be a probability"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="padding should be at most half"):
        nn.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match="BatchNorm2d: num_features"):
        nn.BatchNorm2d(-1)


LAYER_ERRORS = [
    (lambda: nn.Linear(True, 3), "Linear: in_features must be a positive int, got True"),
    (lambda: nn.Linear(3, 0), "Linear: out_features must be a positive int, got 0"),
    (lambda: nn.Conv2d(0, 3, 3), "Conv2d: in_channels must be a positive int, got 0"),
    (lambda: nn.Conv2d(3, 0, 3), "Conv2d: out_channels must be a positive int, got 0"),
    (lambda: nn.Conv2d(1, 2, (3, 0)), "Conv2d: kernel_size and stride must be >= 1 and padding "
     ">= 0, got kernel_size=(3, 0), stride=(1, 1), padding=(0, 0)"),
    (lambda: nn.Conv2d(1, 2, 3, stride=(1, 0)), "Conv2d: kernel_size and stride must be >= 1 "
     "and padding >= 0, got kernel_size=(3, 3), stride=(1, 0), padding=(0, 0)"),
    (lambda: nn.Dropout(True), "Dropout: p must be a probability in [0, 1], got True"),
    (lambda: nn.Dropout(-0.1), "Dropout: p must be a probability in [0, 1], got -0.1"),
    (lambda: nn.BatchNorm2d(4, momentum=1.5),
     "BatchNorm2d: momentum must be a probability in [0, 1], got 1.5"),
    (lambda: nn.BatchNorm1d(4, eps=0), "BatchNorm1d: eps must be positive, got 0"),
]


@pytest.mark.parametrize("make, message", LAYER_ERRORS, ids=[m for _, m in LAYER_ERRORS])
def test_each_layer_argument_error_names_the_layer_the_argument_and_the_value(make, message):
    with pytest.raises(ValueError) as error:
        make()
    assert str(error.value) == message


def test_arguments_on_their_bounds_are_accepted(rng):
    x = cnnlab.Tensor(rng.standard_normal((4, 6)) + 3)
    assert np.array_equal(nn.Dropout(0.0)(x).data, x.data)  # keeps everything
    assert not nn.Dropout(1.0, generator=rng)(x).data.any()  # drops everything, as torch
    for momentum in (0.0, 1.0, None):
        assert nn.BatchNorm2d(4, momentum=momentum).momentum == momentum
    assert nn.Conv2d(1, 1, 1, padding=0).padding == (0, 0)


def test_reprs_show_the_non_default_arguments():
    assert repr(nn.Linear(3, 2)) == "Linear(in_features=3, out_features=2)"
    assert repr(nn.Linear(3, 2, bias=False)) == "Linear(in_features=3, out_features=2, bias=False)"
    assert repr(nn.Conv2d(1, 8, 3, padding=1)) == (
        "Conv2d(1, 8, kernel_size=(3, 3), padding=(1, 1))")
    assert repr(nn.Conv2d(1, 8, 5, stride=2)) == "Conv2d(1, 8, kernel_size=(5, 5), stride=(2, 2))"
    assert repr(nn.MaxPool2d(2)) == "MaxPool2d(kernel_size=2)"
    assert repr(nn.MaxPool2d(2, stride=1, padding=1)) == (
        "MaxPool2d(kernel_size=2, stride=1, padding=1)")
    assert repr(nn.AvgPool2d(3, 2)) == "AvgPool2d(kernel_size=3, stride=2)"
    assert repr(nn.LeakyReLU()) == "LeakyReLU()"
    assert repr(nn.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
    assert repr(nn.Flatten()) == "Flatten()"
    assert repr(nn.Flatten(0)) == "Flatten(start_dim=0, end_dim=-1)"
    assert repr(nn.Flatten(1, 2)) == "Flatten(start_dim=1, end_dim=2)"
    assert repr(nn.BatchNorm2d(4, eps=1e-3, momentum=None, affine=False,
                               track_running_stats=False)) == (
        "BatchNorm2d(4, eps=0.001, momentum=None, affine=False, track_running_stats=False)")
    assert repr(nn.BatchNorm2d(16)) == "BatchNorm2d(16)"
    assert repr(nn.Dropout(0.25)) == "Dropout(p=0.25)"
    assert repr(nn.ReLU()) == "ReLU()"
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.Sequential(nn.ReLU()))
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Flatten()\n"
        "  (1): Linear(in_features=4, out_features=2)\n"
        "  (2): Sequential(\n"
        "    (0): ReLU()\n"
        "  )\n"
        ")"
    )


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 2, 3)])
def test_functional_batch_norm_passes_gradcheck(rng, training, shape):
    """The fused primitive's closed-form backward against central differences."""
    running_mean, running_var = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    assert_gradcheck(
        lambda x, w, b: F.batch_norm(x, running_mean.copy(), running_var.copy(), w, b,
                                     training=training),
        rng.standard_normal(shape), rng.uniform(0.5, 2, 3), rng.standard_normal(3),
    )
    assert_gradcheck(lambda x: F.batch_norm(x, None, None, training=True) * 2.0,
                     rng.standard_normal(shape))


def test_batchnorm_input_errors_name_the_shapes_it_takes():
    cases = [
        (nn.BatchNorm1d(3), (2, 3, 4, 4), "(N, C) or (N, C, L) with C = 3, got (2, 3, 4, 4)"),
        (nn.BatchNorm1d(3), (2, 4), "(N, C) or (N, C, L) with C = 3, got (2, 4)"),
        (nn.BatchNorm2d(3), (2, 3), "(N, C, H, W) with C = 3, got (2, 3)"),
    ]
    for layer, shape, expected in cases:
        with pytest.raises(ValueError) as error:
            layer(np.ones(shape))
        assert str(error.value) == f"{type(layer).__name__}: expected input of shape {expected}"


def test_batchnorm_takes_plain_arrays_and_may_keep_no_statistics(rng):
    x = rng.standard_normal((4, 3, 2, 2))
    layer = nn.BatchNorm2d(3, track_running_stats=False)
    assert layer.running_mean is None and layer.running_var is None
    assert layer.num_batches_tracked is None  # as torch: the attributes exist, set to None
    out = layer(x)  # an ndarray, not a Tensor
    np.testing.assert_allclose(out.data.mean(axis=(0, 2, 3)), 0, atol=1e-6)


@pytest.mark.parametrize("needs", [(False, True, True), (True, True, False), (True, False, True),
                                   (False, False, True)], ids=str)
def test_batch_norm_gives_gradients_to_exactly_the_inputs_that_need_them(rng, needs):
    """Data that needs no gradient (a first layer's input) or a frozen scale or shift."""
    arrays = [rng.standard_normal((4, 3, 2, 2)), rng.uniform(0.5, 2, 3), rng.standard_normal(3)]
    ours = [cnnlab.Tensor(a.copy(), requires_grad=need) for a, need in zip(arrays, needs,
                                                                             strict=True)]
    theirs = [torch.tensor(a.copy(), requires_grad=need) for a, need in zip(arrays, needs,
                                                                             strict=True)]
    upstream = rng.standard_normal((4, 3, 2, 2))
    F.batch_norm(ours[0], None, None, ours[1], ours[2], training=True).backward(upstream)
    torch.nn.functional.batch_norm(theirs[0], None, None, theirs[1], theirs[2],
                                   training=True).backward(torch.from_numpy(upstream))
    for mine, their, need in zip(ours, theirs, needs, strict=True):
        if need:
            assert relative_error(mine.grad, their.grad.numpy()) < 1e-10
        else:
            assert mine.grad is None


def test_batch_norm_backward_runs_twice_with_retain_graph(rng):
    layer = nn.BatchNorm2d(3).double()
    x = cnnlab.Tensor(rng.standard_normal((4, 3, 2, 2)), requires_grad=True)
    loss = (layer(x) ** 2 * cnnlab.Tensor(rng.standard_normal((4, 3, 2, 2)))).sum()
    loss.backward(retain_graph=True)
    first = x.grad.copy()
    loss.backward()
    np.testing.assert_allclose(x.grad, 2 * first, rtol=1e-12)
