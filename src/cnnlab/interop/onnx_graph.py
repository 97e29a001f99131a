"""A cnnlab classifier as an ONNX graph, built with the onnx package's helpers: `onnx_model`.

    proto = onnx_model(model, metadata, opset=17)   # onnx.ModelProto, checked
    (N, C, H, W) float32 "images" in [0, 1] -> Sub mean -> Div std -> layers -> (N, K) "logits"

The run's normalisation is the graph's first two nodes, so a caller feeds an image scaled to
[0, 1] (pixel / 255, as `cnnlab predict` scales an image file). Layers are exported in
inference form: BatchNorm with its running statistics, Dropout left out. One table, LAYERS,
maps each cnnlab layer type to the function that adds its nodes; a layer type is one entry.
Initialisers are named by the model's state-dict keys ("0.weight", "1.running_mean", ...).

The transformer's layers: LayerNorm is LayerNormalization from opset 17 (ReduceMean, Sub,
Sqrt, Div before it), GELU is Gelu from opset 20 (x * (1 + Erf(x / sqrt 2)) / 2 before it),
attention is MatMul, Softmax and MatMul over (N, heads, L, S) with the heads split by Reshape
and Transpose; the encoder layer composes them with its residual Adds. MultiheadAttention
alone exports self-attention (query = key = value = its input), as the encoder layer uses it.
"""

import json

import numpy as np

from cnnlab import __version__, nn
from cnnlab.interop.optional import require
from cnnlab.shapes import pair

INSTALL_ONNX = "pip install 'cnnlab[export]'  (or: pip install onnx)"
DEFAULT_OPSET = 17
MIN_OPSET = 13


class GraphBuilder:
    """Collects the nodes and initialisers of an ONNX graph, naming the values it adds.

    Attributes:
        nodes: onnx NodeProtos in execution order. initializers: onnx TensorProtos.
        opset: the operator set the graph is for (some layers export differently below 17).
    """

    def __init__(self, onnx, opset=DEFAULT_OPSET):
        self.onnx, self.opset = onnx, opset
        self.nodes, self.initializers = [], []

    def constant(self, name, array) -> str:
        """Add an initialiser `name` holding `array` as float32 (int64 if integer)."""
        array = np.asarray(array)
        array = array.astype(np.int64 if array.dtype.kind in "iu" else np.float32)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op, inputs, output, **attributes) -> str:
        """Add the node `op`(inputs) -> output, with ONNX attributes; returns the output."""
        self.nodes.append(self.onnx.helper.make_node(
            op, list(inputs), [output], name=output, **attributes))
        return output


# ----- one function per layer type: (graph, module, x, path) -> output value ------------------
def _linear(graph, module, x, path):
    weight = graph.constant(f"{path}.weight", module.weight.data)
    transposed = graph.node("Transpose", [weight], f"{path}.weight_t", perm=[1, 0])
    y = graph.node("MatMul", [x, transposed], f"{path}.matmul")
    if module.bias is None:
        return y
    return graph.node("Add", [y, graph.constant(f"{path}.bias", module.bias.data)], f"{path}.add")


def _window(module):
    """ONNX kernel_shape, strides and pads of a conv or pool layer."""
    kernel = pair(module.kernel_size)
    stride = pair(module.kernel_size if module.stride is None else module.stride)
    padding = pair(module.padding)
    return {"kernel_shape": list(kernel), "strides": list(stride), "pads": list(padding) * 2}


def _conv2d(graph, module, x, path):
    inputs = [x, graph.constant(f"{path}.weight", module.weight.data)]
    if module.bias is not None:
        inputs.append(graph.constant(f"{path}.bias", module.bias.data))
    return graph.node("Conv", inputs, f"{path}.conv", **_window(module))


def _max_pool2d(graph, module, x, path):
    return graph.node("MaxPool", [x], f"{path}.maxpool", **_window(module))


def _avg_pool2d(graph, module, x, path):
    # cnnlab counts padded zeros in the divisor, as PyTorch's count_include_pad=True
    return graph.node("AveragePool", [x], f"{path}.avgpool", count_include_pad=1,
                      **_window(module))


def _unary(op, **attributes):
    def add(graph, module, x, path):
        return graph.node(op, [x], f"{path}.{op.lower()}", **attributes)
    return add


def _leaky_relu(graph, module, x, path):
    return graph.node("LeakyRelu", [x], f"{path}.leakyrelu", alpha=module.negative_slope)


def _identity(graph, module, x, path):
    return x  # Identity, and Dropout in inference form


def _flatten(graph, module, x, path):
    if module.end_dim != -1 or module.start_dim < 0:
        raise ValueError(f"export_onnx: Flatten(start_dim={module.start_dim}, "
                         f"end_dim={module.end_dim}) at {path}: only end_dim=-1 with a "
                         "non-negative start_dim has an ONNX Flatten")
    return graph.node("Flatten", [x], f"{path}.flatten", axis=module.start_dim)


def _batch_norm(graph, module, x, path):
    if not module.track_running_stats:
        raise ValueError(f"export_onnx: {type(module).__name__} at {path} keeps no running "
                         "statistics, so it has no inference form")
    count = module.num_features
    weight = module.weight.data if module.weight is not None else np.ones(count)
    bias = module.bias.data if module.bias is not None else np.zeros(count)
    inputs = [x, graph.constant(f"{path}.weight", weight), graph.constant(f"{path}.bias", bias),
              graph.constant(f"{path}.running_mean", module.running_mean),
              graph.constant(f"{path}.running_var", module.running_var)]
    return graph.node("BatchNormalization", inputs, f"{path}.batchnorm", epsilon=module.eps)


# ----- the transformer's layers ----------------------------------------------------------
def _layer_norm(graph, module, x, path):
    shape, count = module.normalized_shape, len(module.normalized_shape)
    weight = module.weight.data if module.weight is not None else np.ones(shape)
    inputs = [x, graph.constant(f"{path}.weight", weight)]
    bias = None if module.bias is None else graph.constant(f"{path}.bias", module.bias.data)
    if graph.opset >= 17:
        return graph.node("LayerNormalization", inputs + [bias] * (bias is not None),
                          f"{path}.layernorm", axis=-count, epsilon=module.eps)
    axes = list(range(-count, 0))  # ReduceMean's axes are an attribute up to opset 17
    mean = graph.node("ReduceMean", [x], f"{path}.mean", axes=axes)
    centred = graph.node("Sub", [x, mean], f"{path}.centred")
    square = graph.node("Mul", [centred, centred], f"{path}.square")
    variance = graph.node("ReduceMean", [square], f"{path}.variance", axes=axes)
    eps = graph.constant(f"{path}.eps", np.float32(module.eps))
    std = graph.node("Sqrt", [graph.node("Add", [variance, eps], f"{path}.variance_eps")],
                     f"{path}.std")
    y = graph.node("Mul", [graph.node("Div", [centred, std], f"{path}.normalised"),
                           inputs[1]], f"{path}.scaled")
    return y if bias is None else graph.node("Add", [y, bias], f"{path}.shifted")


def _gelu(graph, module, x, path):
    if graph.opset >= 20:
        return graph.node("Gelu", [x], f"{path}.gelu", approximate="none")
    inverse_sqrt2 = graph.constant(f"{path}.inverse_sqrt2", np.float32(1 / np.sqrt(2)))
    half = graph.constant(f"{path}.half", np.float32(0.5))
    one = graph.constant(f"{path}.one", np.float32(1))
    erf = graph.node("Erf", [graph.node("Mul", [x, inverse_sqrt2], f"{path}.scaled")],
                     f"{path}.erf")
    cdf = graph.node("Mul", [graph.node("Add", [erf, one], f"{path}.erf_plus_one"), half],
                     f"{path}.cdf")
    return graph.node("Mul", [x, cdf], f"{path}.gelu")


def _multihead_attention(graph, module, x, path):
    """Self-attention of x: (L, N, E), or (N, L, E) with batch_first -> as x."""
    if not module.batch_first:
        x = graph.node("Transpose", [x], f"{path}.batch_first", perm=[1, 0, 2])
    heads, head_dim, embed = module.num_heads, module.head_dim, module.embed_dim
    weight = graph.constant(f"{path}.in_proj_weight", module.in_proj_weight.data)
    transposed = graph.node("Transpose", [weight], f"{path}.in_proj_weight_t", perm=[1, 0])
    qkv = graph.node("MatMul", [x, transposed], f"{path}.in_proj")  # (N, L, 3E)
    if module.in_proj_bias is not None:
        bias = graph.constant(f"{path}.in_proj_bias", module.in_proj_bias.data)
        qkv = graph.node("Add", [qkv, bias], f"{path}.in_proj_add")
    split = graph.constant(f"{path}.qkv_shape", [0, 0, 3, heads, head_dim])
    qkv = graph.node("Reshape", [qkv, split], f"{path}.qkv_heads")
    qkv = graph.node("Transpose", [qkv], f"{path}.qkv", perm=[2, 0, 3, 1, 4])  # (3, N, h, L, d)
    q, k, v = (graph.node("Gather", [qkv, graph.constant(f"{path}.{name}_index", index)],
                          f"{path}.{name}", axis=0)
               for index, name in enumerate("qkv"))  # each (N, h, L, d)
    scale = graph.constant(f"{path}.scale", np.float32(1 / np.sqrt(head_dim)))
    q = graph.node("Mul", [q, scale], f"{path}.q_scaled")
    k = graph.node("Transpose", [k], f"{path}.k_t", perm=[0, 1, 3, 2])
    scores = graph.node("MatMul", [q, k], f"{path}.scores")  # (N, h, L, L)
    weights = graph.node("Softmax", [scores], f"{path}.weights", axis=-1)
    out = graph.node("MatMul", [weights, v], f"{path}.attended")  # (N, h, L, d)
    out = graph.node("Transpose", [out], f"{path}.heads_last", perm=[0, 2, 1, 3])
    merged = graph.constant(f"{path}.merged_shape", [0, 0, embed])
    out = graph.node("Reshape", [out, merged], f"{path}.merged")  # (N, L, E)
    out = _linear(graph, module.out_proj, out, f"{path}.out_proj")
    if not module.batch_first:
        out = graph.node("Transpose", [out], f"{path}.sequence_first", perm=[1, 0, 2])
    return out


def _encoder_layer(graph, module, x, path):
    def norm(which, value):
        return _layer_norm(graph, getattr(module, which), value, f"{path}.{which}")

    def attention(value):
        return _multihead_attention(graph, module.self_attn, value, f"{path}.self_attn")

    def feed_forward(value):
        hidden = _linear(graph, module.linear1, value, f"{path}.linear1")
        if module.activation == "gelu":
            hidden = _gelu(graph, None, hidden, f"{path}.activation")
        else:
            hidden = graph.node("Relu", [hidden], f"{path}.activation.relu")
        return _linear(graph, module.linear2, hidden, f"{path}.linear2")

    if module.norm_first:
        x = graph.node("Add", [x, attention(norm("norm1", x))], f"{path}.residual1")
        return graph.node("Add", [x, feed_forward(norm("norm2", x))], f"{path}.residual2")
    x = norm("norm1", graph.node("Add", [x, attention(x)], f"{path}.residual1"))
    return norm("norm2", graph.node("Add", [x, feed_forward(x)], f"{path}.residual2"))


def _patch_tokens(graph, module, x, path):
    """(N, D, H', W') -> (N, 1 + P, D): class token in front, positions added."""
    embed, patches = module.embed_dim, module.num_patches
    flat = graph.node("Reshape", [x, graph.constant(f"{path}.flat_shape", [0, embed, patches])],
                      f"{path}.flat")
    tokens = graph.node("Transpose", [flat], f"{path}.tokens", perm=[0, 2, 1])
    batch = graph.node("Gather", [graph.node("Shape", [x], f"{path}.input_shape"),
                                  graph.constant(f"{path}.batch_axis", [0])], f"{path}.batch")
    shape = graph.node("Concat", [batch, graph.constant(f"{path}.token_shape", [1, embed])],
                       f"{path}.class_shape", axis=0)
    class_token = graph.constant(f"{path}.class_token", module.class_token.data)
    class_tokens = graph.node("Expand", [class_token, shape], f"{path}.class_tokens")
    tokens = graph.node("Concat", [class_tokens, tokens], f"{path}.with_class", axis=1)
    positions = graph.constant(f"{path}.pos_embedding", module.pos_embedding.data)
    return graph.node("Add", [tokens, positions], f"{path}.positioned")


def _select_token(graph, module, x, path):
    index = graph.constant(f"{path}.index", np.int64(module.index))  # a scalar: drops axis 1
    return graph.node("Gather", [x, index], f"{path}.token", axis=1)


LAYERS = {
    nn.Linear: _linear,
    nn.Conv2d: _conv2d,
    nn.MaxPool2d: _max_pool2d,
    nn.AvgPool2d: _avg_pool2d,
    nn.ReLU: _unary("Relu"),
    nn.LeakyReLU: _leaky_relu,
    nn.Tanh: _unary("Tanh"),
    nn.Sigmoid: _unary("Sigmoid"),
    nn.Identity: _identity,
    nn.Dropout: _identity,
    nn.Flatten: _flatten,
    nn.BatchNorm1d: _batch_norm,
    nn.BatchNorm2d: _batch_norm,
    nn.LayerNorm: _layer_norm,
    nn.GELU: _gelu,
    nn.MultiheadAttention: _multihead_attention,
    nn.TransformerEncoderLayer: _encoder_layer,
    nn.PatchTokens: _patch_tokens,
    nn.SelectToken: _select_token,
}


def _add_layers(graph, model, x, path):
    if isinstance(model, nn.Sequential):
        for name, child in model.named_children():
            x = _add_layers(graph, child, x, f"{path}.{name}" if path else name)
        return x
    add = LAYERS.get(type(model))
    if add is None:
        known = ", ".join(sorted(kind.__name__ for kind in LAYERS))
        raise ValueError(f"export_onnx: no ONNX export for {type(model).__name__} at "
                         f"{path or 'the top'}; cnnlab exports Sequential, {known}")
    return add(graph, model, x, path or type(model).__name__)


# ----- the model ----------------------------------------------------------------------------
def check_opset(opset, onnx) -> int:
    """`opset` if it is an int from MIN_OPSET to the newest the onnx package knows."""
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"export_onnx: opset must be an int from {MIN_OPSET} to {newest}, "
                         f"got {opset!r}")
    return opset


def pixel_preprocessing(metadata, source="the model") -> dict:
    """The metadata's "preprocessing" for normalised pixels; ValueError (one line) for a
    model on hand-made features or metadata without classes and preprocessing."""
    preprocessing = metadata.get("preprocessing")
    if not isinstance(preprocessing, dict) or not isinstance(metadata.get("classes"), list):
        raise ValueError(f"{source}: not a model trained by cnnlab train (its metadata has no "
                         "classes and preprocessing)")
    if "features" in preprocessing:
        names = ", ".join(preprocessing["features"].get("names", ())) or "hand-made"
        raise ValueError(f"{source}: trained on hand-made features ({names}), which cnnlab "
                         "computes in NumPy before the model; only runs on pixels can be "
                         "exported with their preprocessing")
    return preprocessing


def onnx_model(model, metadata, opset=DEFAULT_OPSET):
    """The ONNX model of a cnnlab classifier and its run's preprocessing, checked.

    Args:
        model: a cnnlab Sequential of layers in LAYERS (any `build_model` model).
        metadata: the run's model metadata (as `checkpoint.load_model` returns it): "classes"
            (K names) and "preprocessing" ("channels", "input_size" (H, W), "mean", "std").
        opset: the ONNX operator set (default 17); the IR version is the lowest that holds
            it (8 for 17), so runtimes older than the onnx package load the file.

    Returns an onnx.ModelProto: input "images" (N, C, H, W) float32 in [0, 1], output
    "logits" (N, K) float32; metadata_props "classes" (a JSON list), "cnnlab_version",
    "model" (the recipe, JSON) and "preprocessing" (JSON). It passed
    `onnx.checker.check_model(full_check=True)`.

    Raises:
        MissingDependencyError when onnx is not installed; ValueError for a model on hand-made
        features, a bad opset or a layer with no ONNX export.
    """
    onnx = require("onnx", "export_onnx", INSTALL_ONNX)
    opset = check_opset(opset, onnx)
    preprocessing = pixel_preprocessing(metadata)
    channels, (height, width) = preprocessing["channels"], preprocessing["input_size"]
    classes = metadata["classes"]
    graph = GraphBuilder(onnx, opset)
    shape = (1, channels, 1, 1)
    mean = graph.constant("preprocessing.mean", np.reshape(preprocessing["mean"], shape))
    std = graph.constant("preprocessing.std", np.reshape(preprocessing["std"], shape))
    x = graph.node("Sub", ["images", mean], "preprocessing.sub_mean")
    x = graph.node("Div", [x, std], "preprocessing.div_std")
    x = _add_layers(graph, model, x, "")
    if graph.nodes and graph.nodes[-1].output[0] == x:
        graph.nodes[-1].output[0] = "logits"
    else:
        graph.node("Identity", [x], "logits")
    helper, float32 = onnx.helper, onnx.TensorProto.FLOAT
    proto = helper.make_model(
        helper.make_graph(
            graph.nodes, "cnnlab",
            [helper.make_tensor_value_info("images", float32, ["N", channels, height, width])],
            [helper.make_tensor_value_info("logits", float32, ["N", len(classes)])],
            graph.initializers,
        ),
        opset_imports=[helper.make_opsetid("", opset)],
        ir_version=helper.find_min_ir_version_for([helper.make_opsetid("", opset)]),
        producer_name="cnnlab", producer_version=__version__,
        doc_string="images: (N, C, H, W) float32, pixel / 255 in [0, 1]; "
                   "logits: (N, classes), softmax gives the probabilities",
    )
    helper.set_model_props(proto, {
        "classes": json.dumps(classes),
        "cnnlab_version": __version__,
        "model": json.dumps(getattr(model, "config", None)),
        "preprocessing": json.dumps(preprocessing),
    })
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise ValueError(f"export_onnx: the graph fails onnx.checker: {first_line}") from None
    return proto
