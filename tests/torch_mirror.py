"""Build the PyTorch twin of a cnnlab module (same layers, same names), with copied weights.

Used by the nn, models and checkpoint tests: if the twin's state-dict keys and shapes accept
ours and its outputs match, the architectures and the weight layouts are PyTorch's.
"""

from collections import OrderedDict

import numpy as np
import torch

from cnnlab import nn


class PatchTokens(torch.nn.Module):
    """torch twin of nn.PatchTokens: grid -> tokens, class token in front, positions added."""

    def __init__(self, num_patches, embed_dim):
        super().__init__()
        self.class_token = torch.nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embedding = torch.nn.Parameter(torch.zeros(1, 1 + num_patches, embed_dim))

    def forward(self, x):
        patches = x.flatten(2).transpose(1, 2)
        return torch.cat([self.class_token.expand(len(x), -1, -1), patches], 1) + self.pos_embedding


class SelectToken(torch.nn.Module):
    def __init__(self, index):
        super().__init__()
        self.index = index

    def forward(self, x):
        return x[:, self.index]


def _transformer_twin(module):
    if isinstance(module, nn.LayerNorm):
        return torch.nn.LayerNorm(module.normalized_shape, module.eps, module.elementwise_affine,
                                  bias=module.bias is not None)
    if isinstance(module, nn.MultiheadAttention):
        return torch.nn.MultiheadAttention(module.embed_dim, module.num_heads, module.dropout,
                                           module.in_proj_bias is not None,
                                           batch_first=module.batch_first)
    if isinstance(module, nn.TransformerEncoderLayer):
        attention = module.self_attn
        return torch.nn.TransformerEncoderLayer(
            attention.embed_dim, attention.num_heads, module.linear1.out_features,
            module.dropout.p, module.activation, module.norm1.eps, attention.batch_first,
            module.norm_first, bias=module.linear1.bias is not None,
        )
    if isinstance(module, nn.PatchTokens):
        return PatchTokens(module.num_patches, module.embed_dim)
    if isinstance(module, nn.SelectToken):
        return SelectToken(module.index)
    if isinstance(module, nn.GELU):
        return torch.nn.GELU()
    return None


def _twin(module):
    twin = _transformer_twin(module)
    if twin is not None:
        return twin
    if isinstance(module, nn.Sequential):
        return torch.nn.Sequential(
            OrderedDict((name, _twin(child)) for name, child in module.named_children())
        )
    if isinstance(module, nn.Linear):
        return torch.nn.Linear(module.in_features, module.out_features, module.bias is not None)
    if isinstance(module, nn.Conv2d):
        return torch.nn.Conv2d(
            module.in_channels, module.out_channels, module.kernel_size, module.stride,
            module.padding, bias=module.bias is not None,
        )
    if isinstance(module, nn.MaxPool2d):
        return torch.nn.MaxPool2d(module.kernel_size, module.stride, module.padding)
    if isinstance(module, nn.AvgPool2d):
        return torch.nn.AvgPool2d(module.kernel_size, module.stride, module.padding)
    if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        kind = torch.nn.BatchNorm1d if isinstance(module, nn.BatchNorm1d) else torch.nn.BatchNorm2d
        return kind(module.num_features, module.eps, module.momentum, module.affine,
                    module.track_running_stats)
    if isinstance(module, nn.LeakyReLU):
        return torch.nn.LeakyReLU(module.negative_slope)
    if isinstance(module, nn.Flatten):
        return torch.nn.Flatten(module.start_dim, module.end_dim)
    if isinstance(module, nn.Dropout):
        return torch.nn.Dropout(module.p)
    simple = {nn.ReLU: torch.nn.ReLU, nn.Tanh: torch.nn.Tanh, nn.Sigmoid: torch.nn.Sigmoid,
              nn.Identity: torch.nn.Identity}
    if type(module) in simple:
        return simple[type(module)]()
    raise TypeError(f"no torch twin for {type(module).__name__}")


def torch_twin(module, dtype=torch.float64):
    """The torch.nn twin of `module`, holding a copy of its state dict, in `dtype`."""
    twin = _twin(module).to(dtype)
    state = {key: torch.from_numpy(np.array(value)) for key, value in module.state_dict().items()}
    twin.load_state_dict(state, strict=True)
    twin.train(module.training)
    return twin


def to_numpy_state(torch_module):
    return {key: value.detach().numpy().copy() for key, value in torch_module.state_dict().items()}
