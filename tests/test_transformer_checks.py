"""The transformer modules' argument checks, reprs, masks and input forms (found by mutation).

What tests/test_transformer.py leaves open: the exact text of the errors, LayerNorm's eps and
repr, GELU's check at construction, masks given as Tensors or lists and a boolean mask's exact
meaning, MultiheadAttention called with two of query, key and value one object, and with
NumPy arrays instead of Tensors. torch is the oracle for the numbers.
"""

import re

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab import nn
from torch_mirror import to_numpy_state

from helpers import TOLERANCE, relative_error


def raises_exactly(message):
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


# ----- argument checks ------------------------------------------------------------------------
def test_errors_name_the_layer_then_the_argument():
    with raises_exactly("LayerNorm: normalized_shape must be a positive int, got 0"):
        nn.LayerNorm(0)
    with raises_exactly("LayerNorm: normalized_shape must be a positive int, got -2"):
        nn.LayerNorm((3, -2))
    with raises_exactly("MultiheadAttention: embed_dim must be a positive int, got 0"):
        nn.MultiheadAttention(0, 1)
    with raises_exactly("MultiheadAttention: num_heads must be a positive int, got 0"):
        nn.MultiheadAttention(4, 0)
    with raises_exactly("MultiheadAttention: dropout must be a probability in [0, 1], got 1.5"):
        nn.MultiheadAttention(4, 2, dropout=1.5)


@pytest.mark.parametrize("eps", [0, 0.0, -1e-5, float("nan")])
def test_layer_norm_refuses_an_eps_that_is_not_positive(eps):
    with raises_exactly(f"LayerNorm: eps must be positive, got {eps!r}"):
        nn.LayerNorm(4, eps=eps)
    assert nn.LayerNorm(4, eps=1e-12).eps == 1e-12  # the smallest positive ones are fine


def test_gelu_checks_approximate_when_built():
    with raises_exactly("gelu: approximate must be 'none', got 'tanh'"):
        nn.GELU("tanh")
    assert nn.GELU().approximate == "none"


# ----- reprs --------------------------------------------------------------------------------
@pytest.mark.parametrize("arguments, expected", [
    ((8,), "LayerNorm((8,))"),
    (((2, 3),), "LayerNorm((2, 3))"),
    ((8, 1e-3), "LayerNorm((8,), eps=0.001)"),
    ((8, 1e-5, False), "LayerNorm((8,), elementwise_affine=False)"),
    ((8, 1e-5, False, False), "LayerNorm((8,), elementwise_affine=False)"),
    ((8, 1e-5, True, False), "LayerNorm((8,), bias=False)"),
    (((2, 3), 1e-6, False), "LayerNorm((2, 3), eps=1e-06, elementwise_affine=False)"),
    ((8, 0.5, True, False), "LayerNorm((8,), eps=0.5, bias=False)"),
])
def test_layer_norm_repr_shows_what_differs_from_the_defaults(arguments, expected):
    """As torch's arguments, shown only where not the default (torch shows eps and
    elementwise_affine always)."""
    assert repr(nn.LayerNorm(*arguments)) == expected


# ----- masks ----------------------------------------------------------------------------------
def attention_pair(batch_first=True, embed=8, heads=2):
    """Our MultiheadAttention with the weights of torch's, both float64, in eval mode."""
    generator = torch.Generator().manual_seed(0)
    theirs = torch.nn.MultiheadAttention(embed, heads, batch_first=batch_first).double().eval()
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    ours = nn.MultiheadAttention(embed, heads, batch_first=batch_first).to(np.float64).eval()
    ours.load_state_dict(to_numpy_state(theirs), strict=True)
    return ours, theirs


def masks(count=3, length=5):
    padding = np.zeros((count, length), bool)
    padding[0, -2:], padding[2, 1] = True, True  # no query left without a key
    causal = np.triu(np.ones((length, length), bool), k=1)
    return padding, causal


def run_ours(module, query, key, value, **options):
    out, weights = module(query, key, value, **options)
    return out.data, (None if weights is None else weights.data)


def run_theirs(module, query, key, value, **options):
    with torch.no_grad():
        options = {name: torch.from_numpy(value) if isinstance(value, np.ndarray) else value
                   for name, value in options.items()}
        out, weights = module(*(torch.from_numpy(x) for x in (query, key, value)), **options)
    return out.numpy(), (None if weights is None else weights.numpy())


def assert_close(ours, theirs):
    for mine, their in zip(ours, theirs, strict=True):
        assert (mine is None) == (their is None)
        if mine is not None:
            assert relative_error(mine, their) <= TOLERANCE[np.float64]


@pytest.mark.parametrize("need_weights", [True, False])
def test_masks_as_tensors_and_lists_give_torchs_numbers(rng, need_weights):
    ours, theirs = attention_pair()
    x = rng.standard_normal((3, 5, 8))
    padding, causal = masks()
    additive = rng.standard_normal((5, 5))
    expected = run_theirs(theirs, x, x, x, key_padding_mask=padding, attn_mask=causal,
                          need_weights=need_weights)
    q = cnnlab.Tensor(x)  # one object: the fused path when no weights are asked for
    for form in (cnnlab.Tensor, lambda mask: mask.tolist(), lambda mask: mask):
        got = run_ours(ours, q, q, q, key_padding_mask=form(padding), attn_mask=form(causal),
                       need_weights=need_weights)
        assert_close(got, expected)
    expected = run_theirs(theirs, x, x, x, attn_mask=additive, need_weights=need_weights)
    for form in (cnnlab.Tensor, lambda mask: mask.tolist(), lambda mask: mask):
        got = run_ours(ours, q, q, q, attn_mask=form(additive), need_weights=need_weights)
        assert_close(got, expected)


@pytest.mark.parametrize("need_weights", [True, False])
def test_a_boolean_mask_is_exactly_its_additive_mask_of_zeros_and_minus_infinity(
        rng, need_weights):
    """True adds -inf, False adds 0 (not any other constant: softmax would hide it but for
    the rounding), so the numbers are the same to the last bit; in float32, where rounding
    shows most."""
    ours, _ = attention_pair()
    ours.to(np.float32)
    x = cnnlab.Tensor(rng.standard_normal((3, 5, 8)).astype(np.float32))
    padding, causal = masks()
    for boolean in ({"key_padding_mask": padding}, {"attn_mask": causal},
                    {"key_padding_mask": padding, "attn_mask": causal}):
        additive = {name: np.where(mask, -np.inf, 0.0).astype(np.float32)
                    for name, mask in boolean.items()}
        got = run_ours(ours, x, x, x, need_weights=need_weights, **boolean)
        expected = run_ours(ours, x, x, x, need_weights=need_weights, **additive)
        for mine, their in zip(got, expected, strict=True):
            assert (mine is None and their is None) or np.array_equal(mine, their)


# ----- query, key and value: which are one object, and NumPy arrays ---------------------------
@pytest.mark.parametrize("shared", ["query is key", "key is value", "all three", "none"])
def test_attention_without_weights_whichever_inputs_are_one_object(rng, shared):
    """Only query is key is value may take the fused self-attention path: two of them one
    object and the third another must still give torch's numbers."""
    ours, theirs = attention_pair()
    a, b, c = (rng.standard_normal((3, 5, 8)) for _ in range(3))
    query, key, value = {"query is key": (a, a, b), "key is value": (b, a, a),
                         "all three": (a, a, a), "none": (a, b, c)}[shared]
    tensors = {id(x): cnnlab.Tensor(x) for x in (a, b, c)}
    got = run_ours(ours, *(tensors[id(x)] for x in (query, key, value)), need_weights=False)
    assert_close(got, run_theirs(theirs, query, key, value, need_weights=False))


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("layout", ["batch first", "sequence first", "unbatched"])
def test_attention_takes_numpy_arrays_as_tensors(rng, layout, need_weights):
    ours, theirs = attention_pair(batch_first=layout == "batch first")
    shape = (5, 8) if layout == "unbatched" else (3, 5, 8)
    x, memory = rng.standard_normal(shape), rng.standard_normal(shape)
    for query, key, value in ((x, x, x), (x, memory, memory)):
        expected = run_theirs(theirs, query, key, value, need_weights=need_weights)
        got = run_ours(ours, query, key, value, need_weights=need_weights)
        assert_close(got, expected)
        as_tensors = run_ours(ours, *(cnnlab.Tensor(v) for v in (query, key, value)),
                              need_weights=need_weights)
        for mine, their in zip(got, as_tensors, strict=True):
            assert (mine is None and their is None) or np.array_equal(mine, their)


def test_attention_refuses_inputs_that_do_not_fit(rng):
    attention = nn.MultiheadAttention(8, 2)  # sequence first: (L, N, E)
    x, y = rng.standard_normal((5, 3, 8)), rng.standard_normal((5, 2, 8))
    ranks = "MultiheadAttention: expected query, key and value all 3-D (batched) or all 2-D"
    for query, key, value in ((x, x, x[0]), (x[0, 0], x[0], x[0])):
        with pytest.raises(ValueError, match=re.escape(ranks)):
            attention(query, key, value)
    wide = rng.standard_normal((5, 3, 6))
    for query, key, value in ((wide, x, x), (x, x, wide)):
        with pytest.raises(ValueError, match="MultiheadAttention: expected 8 features"):
            attention(query, key, value)
    with pytest.raises(ValueError, match="the batch size of query, got shapes"):
        attention(x, y, y)  # batches of 3 and 2 on axis 1
    longer = rng.standard_normal((6, 3, 8))
    with pytest.raises(ValueError, match=re.escape(
            "MultiheadAttention: key and value must have one shape and the batch size of "
            "query, got shapes (5, 3, 8), (5, 3, 8), (6, 3, 8)")):
        attention(x, x, longer)  # the batch sizes agree, key and value do not


def test_attention_and_encoder_layer_reprs_show_what_differs_from_the_defaults():
    def first_lines(module, count):
        return repr(module).splitlines()[:count]

    assert first_lines(nn.MultiheadAttention(8, 2), 2) == [
        "MultiheadAttention(", "  embed_dim=8, num_heads=2"]
    assert first_lines(nn.MultiheadAttention(8, 2, dropout=0.1), 2)[1] == (
        "  embed_dim=8, num_heads=2, dropout=0.1")
    assert first_lines(nn.MultiheadAttention(8, 2, bias=False), 2)[1] == (
        "  embed_dim=8, num_heads=2, bias=False")
    assert first_lines(nn.MultiheadAttention(8, 2, 0.25, bias=False, batch_first=True), 2)[1] == (
        "  embed_dim=8, num_heads=2, dropout=0.25, bias=False, batch_first=True")
    assert first_lines(nn.TransformerEncoderLayer(8, 2, 16), 2) == [
        "TransformerEncoderLayer(", "  (self_attn): MultiheadAttention("]
    assert first_lines(nn.TransformerEncoderLayer(8, 2, 16, norm_first=True), 2)[1] == (
        "  norm_first=True")  # no leading comma
    assert first_lines(nn.TransformerEncoderLayer(8, 2, 16, activation="gelu"), 2)[1] == (
        "  activation='gelu'")
    assert first_lines(nn.TransformerEncoderLayer(8, 2, 16, activation="gelu", norm_first=True),
                       2)[1] == "  activation='gelu', norm_first=True"


def test_encoder_layer_defaults_are_torchs():
    """Built with only d_model and nhead, the layer has torch's parameters, dropout, layout and
    norm placement."""
    ours, theirs = nn.TransformerEncoderLayer(8, 2), torch.nn.TransformerEncoderLayer(8, 2)
    assert {key: tuple(value.shape) for key, value in ours.state_dict().items()} == {
        key: tuple(value.shape) for key, value in theirs.state_dict().items()}
    assert ours.linear1.weight.shape == (2048, 8)
    assert (ours.norm_first, ours.self_attn.batch_first) == (
        theirs.norm_first, theirs.self_attn.batch_first) == (False, False)
    assert ours.dropout.p == ours.dropout1.p == theirs.dropout.p == 0.1
    assert (ours.norm1.eps, ours.activation) == (theirs.norm1.eps, "relu")


# ----- the encoder layer's attention --------------------------------------------------------
def test_encoder_layer_attends_through_the_fused_self_attention_to_the_last_bit(rng):
    """Its attention is MultiheadAttention(x, x, x, need_weights=False), the one fused
    primitive: the layer's output and gradient equal its parts composed by hand exactly (the
    unfused path, with weights, rounds the gradient differently)."""
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True,
                                       generator=rng).to(np.float64).eval()
    data = rng.standard_normal((3, 5, 8))
    x = cnnlab.Tensor(data, requires_grad=True)
    layer(x).sum().backward()
    by_hand = cnnlab.Tensor(data, requires_grad=True)
    attended, _ = layer.self_attn(by_hand, by_hand, by_hand, need_weights=False)
    hidden = layer.norm1(by_hand + attended)
    layer.norm2(hidden + layer.linear2(layer.linear1(hidden).relu())).sum().backward()
    np.testing.assert_array_equal(x.grad, by_hand.grad)


# ----- PatchTokens and SelectToken ----------------------------------------------------------
def test_patch_tokens_errors_name_the_layer_then_the_argument():
    with raises_exactly("PatchTokens: num_patches must be a positive int, got 0"):
        nn.PatchTokens(0, 8)
    with raises_exactly("PatchTokens: embed_dim must be a positive int, got -1"):
        nn.PatchTokens(4, -1)


@pytest.mark.parametrize("shape", [
    (2, 8, 4), (2, 8, 2, 2, 1), (2, 7, 2, 2), (2, 9, 2, 2), (2, 8, 2, 3), (2, 8, 4, 4),
])
def test_patch_tokens_refuses_each_wrong_shape_on_its_own(shape):
    tokens = nn.PatchTokens(4, 8)
    with raises_exactly(f"PatchTokens: expected input of shape (N, D, H', W') with D = 8 and "
                        f"H' * W' = 4, got {shape}"):
        tokens(cnnlab.Tensor(np.zeros(shape, np.float32)))


def test_patch_tokens_take_a_numpy_array_as_a_tensor(rng):
    tokens = nn.PatchTokens(6, 8, generator=rng)
    grid = rng.standard_normal((2, 8, 2, 3)).astype(np.float32)
    expected = tokens(cnnlab.Tensor(grid)).data
    np.testing.assert_array_equal(tokens(grid).data, expected)
    np.testing.assert_array_equal(expected[:, 1:], grid.reshape(2, 8, 6).transpose(0, 2, 1)
                                  + tokens.pos_embedding.data[:, 1:])


def test_select_token_takes_the_class_token_by_default_and_refuses_other_ranks(rng):
    x = cnnlab.Tensor(rng.standard_normal((2, 5, 4)))
    np.testing.assert_array_equal(nn.SelectToken()(x).data, x.data[:, 0])
    np.testing.assert_array_equal(nn.SelectToken(3)(x).data, x.data[:, 3])
    for shape in [(2, 5), (2, 5, 4, 1)]:
        with raises_exactly(f"SelectToken: expected input of shape (N, T, D), got {shape}"):
            nn.SelectToken()(cnnlab.Tensor(np.zeros(shape)))


def test_select_token_repr_shows_a_index_other_than_0():
    assert repr(nn.SelectToken()) == "SelectToken()"
    assert repr(nn.SelectToken(2)) == "SelectToken(index=2)"
    assert repr(nn.SelectToken(-1)) == "SelectToken(index=-1)"
