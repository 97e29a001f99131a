"""Take a model anywhere: PyTorch modules both ways, ONNX export, PyTorch weights export.

    module = to_torch(model)                       # torch.nn.Module, the same function
    model = from_torch(module)                     # and back; same state-dict keys
    export_onnx("runs/cnn", "cnn.onnx")            # images in [0, 1] -> logits, checked
    export_torch("runs/cnn", "cnn.safetensors")    # weights for strict=True, plus cnn.py

PyTorch, onnx and onnxruntime are optional: they are imported when these functions are
called, and a missing one is a MissingDependencyError (an ImportError) that names the command
installing it (`pip install torch`, `pip install 'cnnlab[export]'`).
"""

from cnnlab.interop.export import export_onnx, export_torch, read_run
from cnnlab.interop.onnx_graph import DEFAULT_OPSET, LAYERS, onnx_model
from cnnlab.interop.optional import MissingDependencyError
from cnnlab.interop.pytorch import CONVERTERS, from_torch, to_torch, torch_source

__all__ = [
    "CONVERTERS",
    "DEFAULT_OPSET",
    "LAYERS",
    "MissingDependencyError",
    "export_onnx",
    "export_torch",
    "from_torch",
    "onnx_model",
    "read_run",
    "to_torch",
    "torch_source",
]
