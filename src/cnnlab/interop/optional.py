"""The optional packages interop needs, imported when a call needs them and never before.

    torch = require("torch", "to_torch", "pip install torch")

`import cnnlab` works without PyTorch, onnx or onnxruntime; the interop functions import them
here, by name, at call time. When one is missing the error names the function that needed it
and the command that installs it.
"""

import importlib


class MissingDependencyError(ImportError):
    """An optional package an interop function needs is not installed."""


def require(package: str, needed_by: str, install: str):
    """The module `package`, imported now; MissingDependencyError naming `install` if absent."""
    try:
        return importlib.import_module(package)
    except ImportError as error:
        raise MissingDependencyError(
            f"{needed_by} needs the {package} package, which is not installed ({error}); "
            f"install it with: {install}"
        ) from None
