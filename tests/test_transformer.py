"""The transformer's pieces against PyTorch: the new primitives (layer norm, exact GELU, fused
softmax, concatenation, expand, batched products) pass float64 gradient checks and match
torch forward and backward; LayerNorm, GELU, MultiheadAttention and TransformerEncoderLayer
match torch.nn with copied weights (outputs, input and parameter gradients, float64 and
float32) and exchange state dicts both ways; erfc is exact to float64 rounding; the ViT is
the same function as the same torch model, forward and backward, and survives a checkpoint."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import cnnlab
from cnnlab import nn
from cnnlab.checkpoint import load_model, save_model
from cnnlab.models import build_model
from cnnlab.nn import functional as F
from cnnlab.ops.loss import softmax_rows
from cnnlab.ops.special import erfc, gelu_and_slope, normal_cdf_and_pdf
from torch_mirror import to_numpy_state, torch_twin

from helpers import TOLERANCE, assert_gradcheck, compare_with_torch, relative_error

rng = np.random.default_rng(13)
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


# ----- erfc and the normal CDF ------------------------------------------------------------------
def test_erfc_is_exact_to_float64_rounding_over_all_three_ranges():
    edges = [0.46875, -0.46875, 4.0, -4.0]  # where one range hands over to the next
    z = np.concatenate([np.linspace(-26, 26, 20001), rng.standard_normal(2000) * 3, [0.0], edges])
    reference = np.array([math.erfc(value) for value in z])
    assert np.max(np.abs(erfc(z) - reference) / reference) < 2e-15
    assert erfc(np.array([40.0, -40.0, np.inf, -np.inf])).tolist() == [0.0, 2.0, 0.0, 2.0]
    assert np.isnan(erfc(np.array([np.nan])))[0]
    single = np.float32([0.3, -2.5, 7.0])  # computed in float64 whatever comes in
    assert erfc(single).dtype == np.float64
    assert np.array_equal(erfc(single), erfc(single.astype(np.float64)))


@pytest.mark.parametrize("dtype, absolute", [(np.float64, 2e-16), (np.float32, 2e-7)])
def test_normal_cdf_and_pdf_to_the_precision_of_each_dtype(dtype, absolute):
    x = np.concatenate([np.linspace(-15, 15, 30001), [np.inf, -np.inf]]).astype(dtype)
    reference = np.array([0.5 * math.erfc(-float(value) / math.sqrt(2)) for value in x])
    density = np.exp(-0.5 * x.astype(np.float64) ** 2) / math.sqrt(2 * math.pi)
    cdf, pdf = normal_cdf_and_pdf(x)
    assert cdf.dtype == pdf.dtype == dtype and cdf.shape == pdf.shape == x.shape
    assert np.max(np.abs(cdf - reference)) <= absolute
    central = x > -6  # where Phi > 1e-9: relative accuracy too
    relative = np.abs(cdf - reference)[central] / reference[central]
    assert relative.max() < (1e-15 if dtype == np.float64 else 2e-6)
    assert np.max(np.abs(pdf - density)) <= absolute
    near = np.abs(x) < 6
    assert np.max(np.abs(pdf - density)[near] / density[near]) < (
        1e-15 if dtype == np.float64 else 2e-6)
    assert all(np.isnan(values[0]) for values in normal_cdf_and_pdf(np.array([np.nan], dtype)))


@pytest.mark.parametrize("dtype, absolute, relative", [(np.float64, 3e-16, 1e-15),
                                                       (np.float32, 4e-7, 3e-6)])
def test_gelu_and_its_slope_to_the_precision_of_each_dtype(dtype, absolute, relative):
    # float32 blocks: several of them (BLOCK values each), a ragged last one, |x| past the cap
    x = np.concatenate([np.linspace(-15, 15, 150000), [0.0, -0.0, 1e3, -1e3, 30.0, -30.0]])
    x = x.astype(dtype)
    cdf = np.array([0.5 * math.erfc(-float(value) / math.sqrt(2)) for value in x])
    x64 = x.astype(np.float64)
    density = np.exp(-0.5 * x64 * x64) / math.sqrt(2 * math.pi)
    out, slope = gelu_and_slope(x)
    assert out.dtype == slope.dtype == dtype and out.shape == slope.shape == x.shape
    # relative to the terms' magnitudes (the slope crosses 0 at x = -0.75)
    for ours, reference, size in ((out, x64 * cdf, np.abs(x64) * cdf),
                                  (slope, cdf + x64 * density, cdf + np.abs(x64) * density)):
        error = np.abs(ours - reference)
        assert np.max(error / np.maximum(np.abs(x64), 1)) <= absolute
        central = size > 1e-8  # x > -5.3 (and x != 0 for out)
        assert np.max(error[central] / size[central]) < relative
    assert slope[-6:-4].tolist() == [0.5, 0.5]  # at 0 and -0: Phi(0) + 0
    assert gelu_and_slope(x, slope=False)[1] is None
    assert np.array_equal(gelu_and_slope(x.reshape(6, -1), slope=False)[0], out.reshape(6, -1))
    with np.errstate(invalid="ignore"):  # a NaN beside them
        far = gelu_and_slope(np.array([np.inf, np.nan, -np.inf], dtype))
    assert np.isnan(far[0][1]) and np.isnan(far[1][1])
    if dtype == np.float32:  # (float64 as torch: inf * 0 is NaN)
        assert far[0][0] == np.inf and abs(far[0][2]) < 1e-36  # -|x| Phi(-|x|) capped


# ----- the new primitives -----------------------------------------------------------------------
def layer_norm_twin(normalized_shape, eps=1e-5):
    return (lambda x, w, b: F.layer_norm(x, normalized_shape, w, b, eps),
            lambda x, w, b: TF.layer_norm(x, normalized_shape, w, b, eps))


def torch_self_attention(heads, mask=None, keep=None):
    """torch's composition of what F.self_attention fuses, on packed (N, L, 3E) projections."""

    def attend(qkv):
        count, length, width = qkv.shape
        q, k, v = (part.reshape(count, length, heads, -1).transpose(1, 2)
                   for part in qkv.chunk(3, dim=-1))
        scores = q / math.sqrt(q.shape[-1]) @ k.transpose(-1, -2)
        if mask is not None:
            scores = scores + torch.from_numpy(mask).to(scores.dtype)
        weights = TF.softmax(scores, -1)
        weights = weights if keep is None else weights * torch.from_numpy(keep)
        return (weights @ v).transpose(1, 2).reshape(count, length, width // 3)

    return attend


PADDING = np.where(np.arange(5) >= 3, -np.inf, 0.0)[None, None, None, :].repeat(2, axis=0)
PADDING[1] = 0.0  # the first sequence's last two tokens are padding

PRIMITIVES = {
    "layer_norm": (*layer_norm_twin((4,)), [(2, 3, 4), (4,), (4,)]),
    "layer_norm_2d": (*layer_norm_twin((3, 4), eps=1e-3), [(2, 3, 4), (3, 4), (3, 4)]),
    "layer_norm_plain": (lambda x: F.layer_norm(x, 5), lambda x: TF.layer_norm(x, (5,)),
                         [(3, 5)]),
    "gelu": (F.gelu, TF.gelu, [(4, 6)]),
    "softmax_last": (lambda x: F.softmax(x, -1), lambda x: TF.softmax(x, -1), [(2, 3, 5)]),
    "softmax_middle": (lambda x: F.softmax(x, 1), lambda x: TF.softmax(x, 1), [(2, 3, 5)]),
    "cat": (lambda a, b, c: cnnlab.cat([a, b, c], dim=1),
            lambda a, b, c: torch.cat([a, b, c], dim=1), [(2, 1, 3), (2, 4, 3), (2, 2, 3)]),
    "expand": (lambda a, b: a.expand(3, -1, -1) * b, lambda a, b: a.expand(3, -1, -1) * b,
               [(1, 2, 4), (3, 2, 4)]),
    "batched_matmul": (lambda a, b: a @ b, lambda a, b: a @ b, [(2, 3, 4, 5), (2, 3, 5, 2)]),
    "self_attention": (lambda qkv: F.self_attention(qkv, 2), torch_self_attention(2),
                       [(2, 5, 12)]),
    "self_attention_masked": (lambda qkv: F.self_attention(qkv, 3, PADDING),
                              torch_self_attention(3, PADDING), [(2, 5, 18)]),
}


@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_new_primitives_pass_gradcheck(name):
    ours, _, shapes = PRIMITIVES[name]
    arrays = [rng.standard_normal(shape) * 2 for shape in shapes]
    assert_gradcheck(ours, *arrays)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_new_primitives_match_torch(name, dtype):
    ours, theirs, shapes = PRIMITIVES[name]
    compare_with_torch(ours, theirs, [rng.standard_normal(shape) * 2 for shape in shapes], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_self_attention_drops_weights_as_the_composition_does(dtype):
    keep = F._keep_factors((2, 2, 5, 5), 0.4, dtype, np.random.default_rng(7))
    assert 0.2 < (keep == 0).mean() < 0.6 and np.allclose(keep[keep > 0], 1 / 0.6)
    ours = lambda qkv: F.self_attention(qkv, 2, dropout_p=0.4,  # noqa: E731
                                        generator=np.random.default_rng(7))
    compare_with_torch(ours, torch_self_attention(2, keep=keep),
                       [rng.standard_normal((2, 5, 12))], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gelu_and_softmax_match_torch_far_out(dtype):
    x = np.concatenate([np.linspace(-12, 12, 97), [-30.0, 30.0, 1e3, -1e3]])[None, :]
    compare_with_torch(F.gelu, TF.gelu, [x], dtype)
    compare_with_torch(lambda s: F.softmax(s, -1), lambda s: TF.softmax(s, -1), [x * 50], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("offset", [100.0, -800.0])  # past exp's range on one side only
def test_softmax_shifts_the_blocks_that_need_it(offset, dtype):
    # (2700, 50): blocks of 1310 rows (BLOCK values), the last ragged; only it holds the far rows
    scores = rng.standard_normal((2700, 50)) * 3
    scores[-20:] += offset
    softmax = (lambda s: F.softmax(s, -1), lambda s: TF.softmax(s, -1))
    out = compare_with_torch(*softmax, [scores], dtype)
    assert np.all(np.isfinite(out.data))
    rows = scores.astype(dtype)
    assert np.array_equal(softmax_rows(rows, out=rows), out.data)  # in place, the same


def test_softmax_and_layer_norm_of_rows_wider_than_a_block():
    wide = rng.standard_normal((2, 70000))  # more values a row than BLOCK: a row a block
    compare_with_torch(lambda s: F.softmax(s, -1), lambda s: TF.softmax(s, -1), [wide])
    compare_with_torch(lambda x: F.layer_norm(x, 70000), lambda x: TF.layer_norm(x, (70000,)),
                       [wide])


def test_bad_arguments_name_the_op_and_the_shapes():
    x = cnnlab.Tensor(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"layer_norm: expected input of shape \(\*, 5\), got"):
        F.layer_norm(x, 5)
    with pytest.raises(ValueError, match=r"layer_norm: expected weight of shape \(4,\)"):
        F.layer_norm(x, 4, cnnlab.Tensor(np.ones(3)))
    with pytest.raises(ValueError, match="gelu: approximate must be 'none', got 'tanh'"):
        F.gelu(x, "tanh")
    with pytest.raises(ValueError, match=r"cat: tensors must agree on every axis but dim 1"):
        cnnlab.cat([x, cnnlab.Tensor(np.zeros((2, 3, 5)))], dim=1)
    with pytest.raises(ValueError, match=r"cat: dim 3 out of range"):
        cnnlab.cat([x], dim=3)
    with pytest.raises(ValueError, match=r"expand: cannot expand shape \(2, 3, 4\) to \(2, 5, 4\)"):
        x.expand(2, 5, 4)
    with pytest.raises(ValueError, match="MultiheadAttention: embed_dim 6 must be divisible by"):
        nn.MultiheadAttention(6, 4)
    with pytest.raises(ValueError, match="activation must be 'relu' or 'gelu', got 'tanh'"):
        nn.TransformerEncoderLayer(8, 2, activation="tanh")
    attention = nn.MultiheadAttention(4, 2, batch_first=True)
    wide = cnnlab.Tensor(np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="expected 4 features on the last axis"):
        attention(wide, wide, wide)
    query = cnnlab.Tensor(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"key_padding_mask of shape \(N, S\) = \(2, 3\)"):
        attention(query, query, query, key_padding_mask=np.zeros((3, 2), bool))


# ----- modules against torch.nn ---------------------------------------------------------------
def randomise(module):
    """Every parameter of a torch module from N(0, 0.5^2), so no weight is a trivial 1 or 0."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return module


def run_module(module, inputs, tensor, **options):
    """Call `module` on `inputs` made tensors by `tensor` (float inputs require grad), then
    backward from a fixed random upstream through every output; returns (outputs, inputs)."""
    made = [tensor(array) if np.asarray(array).dtype.kind == "f" else array for array in inputs]
    outputs = module(*made, **options)
    outputs = [out for out in (outputs if isinstance(outputs, tuple) else (outputs,))
               if out is not None]
    generator = np.random.default_rng(1)
    total = 0
    for out in outputs:
        upstream = generator.standard_normal(tuple(out.shape)).astype(inputs[0].dtype)
        total = total + (out * tensor(upstream, grad=False)).sum()
    total.backward()
    return outputs, made


def assert_module_matches_torch(ours, theirs, inputs, dtype=np.float64, **options):
    """theirs' random weights loaded into ours (torch -> cnnlab, strict); outputs and the
    gradients of the inputs and of every parameter agree within TOLERANCE[dtype]; ours'
    state dict loads back into a fresh copy of theirs (cnnlab -> torch, strict)."""
    tolerance = TOLERANCE[dtype]
    theirs = randomise(theirs).to(TORCH_DTYPE[dtype])
    ours.to(dtype).load_state_dict(to_numpy_state(theirs), strict=True)
    inputs = [np.asarray(a, dtype) if np.asarray(a).dtype.kind == "f" else a for a in inputs]

    def ours_tensor(array, grad=True):
        return cnnlab.Tensor(np.array(array), requires_grad=grad)

    def their_tensor(array, grad=True):
        return torch.tensor(np.array(array), requires_grad=grad)

    options = {key: value.astype(dtype) if isinstance(value, np.ndarray) and value.dtype.kind == "f"
               else value for key, value in options.items()}
    their_options = {key: torch.from_numpy(value) if isinstance(value, np.ndarray) else value
                     for key, value in options.items()}
    our_outputs, our_inputs = run_module(ours, inputs, ours_tensor, **options)
    their_outputs, their_inputs = run_module(theirs, inputs, their_tensor, **their_options)
    assert len(our_outputs) == len(their_outputs)
    for mine, their in zip(our_outputs, their_outputs, strict=True):
        assert mine.dtype == dtype and mine.shape == tuple(their.shape)
        assert relative_error(mine.data, their.detach().numpy()) <= tolerance
    for mine, their in zip(our_inputs, their_inputs, strict=True):
        if isinstance(mine, cnnlab.Tensor):
            assert relative_error(mine.grad, their.grad.numpy()) <= tolerance
    their_parameters = dict(theirs.named_parameters())
    assert [name for name, _ in ours.named_parameters()] == list(their_parameters)
    for name, parameter in ours.named_parameters():
        error = relative_error(parameter.grad, their_parameters[name].grad.numpy())
        assert error <= tolerance, f"{name}: gradient relative error {error:.3g}"
    fresh = randomise(copy.deepcopy(theirs).float()).to(TORCH_DTYPE[dtype])  # other weights
    fresh.load_state_dict({key: torch.from_numpy(value)
                           for key, value in ours.state_dict().items()}, strict=True)
    for key, value in fresh.state_dict().items():
        assert np.array_equal(value.numpy(), ours.state_dict()[key]), key


DTYPES = [np.float64, np.float32]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("options", [{}, {"bias": False}, {"elementwise_affine": False}])
def test_layer_norm_in_blocks_and_without_a_graph(options, dtype):
    # 2100 rows of 64: blocks of 1024 rows (BLOCK values), the last ragged
    x = rng.standard_normal((3, 700, 64)) * 3 + 1
    norm, reference = nn.LayerNorm(64, **options), torch.nn.LayerNorm(64, **options)
    if norm.weight is not None:
        norm.weight.data[...] = reference.weight.data.numpy()[...] = rng.standard_normal(64)
    if norm.bias is not None:
        norm.bias.data[...] = reference.bias.data.numpy()[...] = rng.standard_normal(64)
    norm, reference = norm.to(dtype), reference.to(TORCH_DTYPE[dtype])
    out = compare_with_torch(norm, reference, [x], dtype)
    with cnnlab.no_grad():  # x_hat made in the output's memory: the same numbers
        assert np.array_equal(norm(cnnlab.Tensor(x.astype(dtype))).data, out.data)
    grads = []
    for frozen in (False, True):  # the input's gradient alone still needs x_hat
        for parameter in norm.parameters():
            parameter.requires_grad_(not frozen)
        inputs = cnnlab.Tensor(x.astype(dtype), requires_grad=True)
        norm(inputs).backward(np.cos(np.arange(x.size)).reshape(x.shape).astype(dtype))
        grads.append(inputs.grad)
    assert np.array_equal(grads[0], grads[1])
    if norm.weight is not None:  # the parameters' gradients alone, the input needing none
        for parameter in norm.parameters():
            parameter.requires_grad_(True)
            parameter.grad = None
        upstream = np.cos(np.arange(x.size)).reshape(x.shape).astype(dtype)
        norm(cnnlab.Tensor(x.astype(dtype))).backward(upstream)
        reference.zero_grad()
        reference(torch.tensor(x.astype(dtype))).backward(torch.from_numpy(upstream))
        for name, parameter in norm.named_parameters():
            expected = getattr(reference, name).grad.numpy()
            assert relative_error(parameter.grad, expected) <= TOLERANCE[dtype]
        if norm.bias is not None:  # the bias's alone
            norm.weight.requires_grad_(False)
            norm.bias.grad = None
            norm(cnnlab.Tensor(x.astype(dtype))).backward(upstream)
            expected = reference.bias.grad.numpy()
            assert relative_error(norm.bias.grad, expected) <= TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, options", [
    (6, {}), ((5, 6), {"eps": 1e-3}), (6, {"elementwise_affine": False}), (6, {"bias": False}),
])
def test_layer_norm_matches_torch(shape, options, dtype):
    x = rng.standard_normal((3, 5, 6)) * 3 + 1
    assert_module_matches_torch(nn.LayerNorm(shape, **options),
                                torch.nn.LayerNorm(shape, **options), [x], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_module_matches_torch(dtype):
    assert_module_matches_torch(nn.GELU(), torch.nn.GELU(), [rng.standard_normal((4, 7)) * 3],
                                dtype)


def sequences(batch_first, count=3, length=5, features=8):
    shape = (count, length, features) if batch_first else (length, count, features)
    return rng.standard_normal(shape)


ATTENTION_CASES = {
    "self, batch first": ({"batch_first": True}, {}),
    "self, sequence first": ({}, {}),
    "per-head weights": ({"batch_first": True}, {"average_attn_weights": False}),
    "no weights": ({}, {"need_weights": False}),
    "no bias": ({"bias": False, "batch_first": True}, {}),
    "padding mask": ({"batch_first": True}, {"key_padding_mask": "padding"}),
    "float attention mask": ({}, {"attn_mask": "float"}),
    "per-head boolean mask": ({"batch_first": True}, {"attn_mask": "boolean per head"}),
}


def attention_masks(options, count=3, length=5, heads=2):
    masks = {}
    if options.get("key_padding_mask") == "padding":
        padding = np.zeros((count, length), bool)
        padding[0, -2:], padding[2, 0] = True, True  # pad two keys of the first sequence
        masks["key_padding_mask"] = padding
    if options.get("attn_mask") == "float":
        masks["attn_mask"] = rng.standard_normal((length, length))
    if options.get("attn_mask") == "boolean per head":
        causal = np.triu(np.ones((length, length), bool), k=1)
        masks["attn_mask"] = np.broadcast_to(causal, (count * heads, length, length)).copy()
    return {**options, **masks}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(ATTENTION_CASES))
def test_multihead_self_attention_matches_torch(case, dtype):
    arguments, options = ATTENTION_CASES[case]
    x = sequences(arguments.get("batch_first", False))
    ours = nn.MultiheadAttention(8, 2, **arguments)
    theirs = torch.nn.MultiheadAttention(8, 2, **arguments)
    assert_module_matches_torch(ours, theirs, [x, x, x], dtype, **attention_masks(options))


class SameInput(torch.nn.Module):
    """Calls a self-attention module with one tensor as query, key and value."""

    def __init__(self, attention):
        super().__init__()
        self.attention = attention

    def forward(self, x, **masks):
        return self.attention(x, x, x, need_weights=False, **masks)


class OursSameInput(nn.Module):
    def __init__(self, attention):
        super().__init__()
        self.attention = attention

    def forward(self, x, **masks):
        return self.attention(x, x, x, need_weights=False, **masks)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["self, batch first", "self, sequence first", "padding mask",
                                  "per-head boolean mask", "float attention mask"])
def test_fused_self_attention_path_matches_torch(case, dtype):
    arguments, options = ATTENTION_CASES[case]
    ours = OursSameInput(nn.MultiheadAttention(8, 2, **arguments))
    theirs = SameInput(torch.nn.MultiheadAttention(8, 2, **arguments))
    x = sequences(arguments.get("batch_first", False))
    assert_module_matches_torch(ours, theirs, [x], dtype, **attention_masks(options))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_attention_and_unbatched_attention_match_torch(dtype):
    query, memory = rng.standard_normal((2, 4, 12)), rng.standard_normal((2, 7, 12))
    arguments = {"batch_first": True}
    assert_module_matches_torch(nn.MultiheadAttention(12, 3, **arguments),
                                torch.nn.MultiheadAttention(12, 3, **arguments),
                                [query, memory, memory * 0.5], dtype)
    assert_module_matches_torch(nn.MultiheadAttention(12, 3), torch.nn.MultiheadAttention(12, 3),
                                [query[0], memory[0], memory[1]], dtype,
                                average_attn_weights=False)


def test_attention_weights_are_a_distribution_and_dropout_scales_them():
    attention = nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True).eval()
    x = cnnlab.Tensor(sequences(True).astype(np.float32))
    _, weights = attention(x, x, x)
    assert weights.shape == (3, 5, 5) and np.allclose(weights.data.sum(-1), 1, atol=1e-6)
    _, per_head = attention(x, x, x, average_attn_weights=False)
    cnnlab.manual_seed(0)
    _, dropped = attention.train()(x, x, x, average_attn_weights=False)
    kept = dropped.data != 0
    assert 0.3 < kept.mean() < 0.7  # about half the weights dropped, the rest doubled
    assert np.allclose(dropped.data[kept], 2 * per_head.data[kept], rtol=1e-5)


ENCODER_CASES = [
    {"norm_first": False, "activation": "relu", "batch_first": False},
    {"norm_first": True, "activation": "gelu", "batch_first": True},
    {"norm_first": True, "activation": "relu", "batch_first": False, "bias": False},
    {"norm_first": False, "activation": "gelu", "batch_first": True, "layer_norm_eps": 1e-3},
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", ENCODER_CASES)
def test_encoder_layer_matches_torch(options, dtype):
    arguments = {"dim_feedforward": 16, "dropout": 0.0, **options}
    x = sequences(options["batch_first"])
    assert_module_matches_torch(nn.TransformerEncoderLayer(8, 2, **arguments),
                                torch.nn.TransformerEncoderLayer(8, 2, **arguments), [x], dtype)


def test_encoder_layer_with_masks_and_dropout_in_eval_matches_torch():
    arguments = {"dim_feedforward": 16, "dropout": 0.3, "batch_first": True, "norm_first": True}
    ours = nn.TransformerEncoderLayer(8, 2, **arguments).eval()
    theirs = torch.nn.TransformerEncoderLayer(8, 2, **arguments).eval()
    padding = np.zeros((3, 5), bool)
    padding[1, 3:] = True
    assert_module_matches_torch(ours, theirs, [sequences(True)], src_key_padding_mask=padding,
                                src_mask=np.triu(np.ones((5, 5), bool), k=1))


def test_a_retained_graph_gives_the_same_gradients_twice():
    layer = nn.TransformerEncoderLayer(8, 2, 16, 0.0, "gelu", batch_first=True,
                                       norm_first=True).double()
    x = cnnlab.Tensor(sequences(True), requires_grad=True)
    out, upstream = layer(x), rng.standard_normal((3, 5, 8))
    out.backward(upstream, retain_graph=True)
    first = x.grad.copy()
    out.backward(upstream)
    assert np.allclose(x.grad, 2 * first, rtol=1e-12, atol=0)


def test_state_dicts_have_torchs_keys_and_shapes():
    ours = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32)
    theirs = torch.nn.TransformerEncoderLayer(16, 4, dim_feedforward=32)
    assert {key: value.shape for key, value in ours.state_dict().items()} == {
        key: tuple(value.shape) for key, value in theirs.state_dict().items()}
    assert list(ours.state_dict()) == list(theirs.state_dict())
    with pytest.raises(ValueError, match="missing keys.*self_attn.in_proj_bias"):
        ours.load_state_dict({key: value for key, value in to_numpy_state(theirs).items()
                              if key != "self_attn.in_proj_bias"})


def test_initialisation_follows_torch():
    attention = nn.MultiheadAttention(64, 4, generator=np.random.default_rng(0))
    bound = math.sqrt(6 / (64 + 192))  # xavier_uniform_ on (3E, E)
    weight = attention.in_proj_weight.data
    assert weight.shape == (192, 64) and np.abs(weight).max() <= bound
    assert np.abs(weight).max() > 0.9 * bound
    assert not attention.in_proj_bias.data.any() and not attention.out_proj.bias.data.any()
    assert np.abs(attention.out_proj.weight.data).max() <= 1 / math.sqrt(64)
    norm = nn.LayerNorm(8)
    assert (norm.weight.data == 1).all() and (norm.bias.data == 0).all()
    tokens = nn.PatchTokens(49, 64, generator=np.random.default_rng(0))
    assert not tokens.class_token.data.any()
    assert 0.015 < tokens.pos_embedding.data.std() < 0.025


# ----- the vision transformer -------------------------------------------------------------------
def test_vit_defaults_are_a_small_pre_norm_transformer_on_4x4_patches():
    model = build_model("vit")
    assert sum(parameter.size for parameter in model.parameters()) == 205_962
    kinds = [type(layer).__name__ for layer in model]
    assert kinds == ["Conv2d", "PatchTokens"] + ["TransformerEncoderLayer"] * 6 + [
        "LayerNorm", "SelectToken", "Linear"]
    assert model[0].kernel_size == model[0].stride == (4, 4) and model[0].out_channels == 64
    assert model[1].pos_embedding.shape == (1, 50, 64)
    layer = model[2]
    assert layer.norm_first and layer.activation == "gelu" and layer.self_attn.batch_first
    assert layer.self_attn.num_heads == 4 and layer.linear1.out_features == 128
    assert build_model("vit", in_channels=3, input_size=(32, 32))[1].num_patches == 64


def test_vit_matches_the_same_torch_model_forward_and_backward_in_float64():
    model = build_model("vit", in_channels=3, num_classes=5, input_size=(8, 12), patch_size=4,
                        num_layers=2).double()
    for parameter in model.parameters():  # positions and class token away from their init
        parameter.data += rng.standard_normal(parameter.shape) * 0.1
    twin = torch_twin(model, torch.float64)
    images, labels = rng.standard_normal((4, 3, 8, 12)), np.array([0, 4, 2, 2])
    ours_x = cnnlab.Tensor(images.copy(), requires_grad=True)
    their_x = torch.tensor(images.copy(), requires_grad=True)
    logits, their_logits = model(ours_x), twin(their_x)
    assert relative_error(logits.data, their_logits.detach().numpy()) < 1e-10
    F.cross_entropy(logits, labels).backward()
    TF.cross_entropy(their_logits, torch.from_numpy(labels)).backward()
    assert relative_error(ours_x.grad, their_x.grad.numpy()) < 1e-10
    their_parameters = dict(twin.named_parameters())
    for name, parameter in model.named_parameters():
        assert relative_error(parameter.grad, their_parameters[name].grad.numpy()) < 1e-10, name


def test_vit_checkpoint_round_trip(tmp_path):
    model = build_model("vit", num_classes=3, num_layers=2, hidden_dim=32, mlp_dim=48)
    x = cnnlab.Tensor(rng.standard_normal((2, 1, 28, 28)).astype(np.float32))
    expected = model.eval()(x).data
    save_model(tmp_path / "vit", model, {"classes": ["a", "b", "c"]})
    loaded, metadata = load_model(tmp_path / "vit")
    assert metadata["model"]["options"]["hidden_dim"] == 32 and loaded.config == model.config
    assert np.array_equal(loaded.eval()(x).data, expected)


def test_vit_options_are_checked():
    with pytest.raises(ValueError, match=r"vit: input_size \(30, 30\) must be a multiple of "
                                         r"patch_size 4"):
        build_model("vit", input_size=(30, 30))
    with pytest.raises(ValueError, match="vit: hidden_dim 30 must be divisible by num_heads 4"):
        build_model("vit", hidden_dim=30)
    with pytest.raises(ValueError, match="vit: option num_layers must be a positive int"):
        build_model("vit", num_layers=0)
