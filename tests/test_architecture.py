"""Dependencies point one way: formulas, ops, tensor, nn, then the libraries built on nn, then
looking inside models, explanations, training, interop, the lab and the command line. Every
top-level module and package has a layer; imports, absolute or relative, may only point to a
lower layer or stay inside their own package. PyTorch and scikit-image are test oracles only,
and pickle is confined to the restricted CIFAR-10 reader."""

import ast
import pathlib

SOURCE = pathlib.Path(__file__).resolve().parent.parent / "src" / "cnnlab"

LAYER = {
    "shapes": 0, "errors": 0, "rng": 0, "threads": 0, "blas": 0, "allocator": 0, "files": 0,
    "checks": 0,
    "ops": 1,
    "tensor": 2, "autograd": 2, "gradcheck": 2,
    "nn": 3,
    "optim": 4, "models": 4, "data": 4, "features": 4, "checkpoint": 4, "metrics": 4,
    "analysis": 5, "pretrained": 5,
    "explain": 6,
    "training": 7,
    "interop": 8,
    "lab": 9,
    "cli": 10,
    "__main__": 11,
}  # fmt: skip


def _module_name(path):
    """cnnlab.data.loader for SOURCE/data/loader.py, cnnlab.data for SOURCE/data/__init__.py."""
    parts = ("cnnlab", *path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path):
    """The absolute names of the modules `path` imports, relative imports resolved."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            if node.module:
                yield module
            else:  # from . import x, y: each x may be a module of the package
                yield from (f"{module}.{alias.name}" for alias in node.names)


def _part(path):
    relative = path.relative_to(SOURCE)
    return relative.parts[0].removesuffix(".py")


def test_every_source_file_belongs_to_a_known_layer():
    unknown = {_part(p) for p in SOURCE.rglob("*.py")} - set(LAYER) - {"__init__"}
    assert not unknown, f"add these to LAYER: {unknown}"


def test_relative_imports_are_read_as_absolute_names():
    assert "cnnlab.data.dataset" in set(_imports(SOURCE / "data" / "loader.py"))  # from .dataset
    assert "cnnlab.data.augment" in set(_imports(SOURCE / "data" / "__init__.py"))


def test_imports_point_down_the_layers():
    upward = []
    for path in SOURCE.rglob("*.py"):
        if path == SOURCE / "__init__.py":
            continue
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "cnnlab" or len(parts) < 2:
                continue
            if parts[1] not in LAYER:
                upward.append(f"{path.relative_to(SOURCE)} imports {name}, which has no layer")
            elif LAYER[parts[1]] > LAYER[_part(path)]:
                upward.append(f"{path.relative_to(SOURCE)} imports {name}")
    assert not upward, upward


def test_the_library_never_imports_test_oracles_and_confines_pickle():
    offenders = []
    for path in SOURCE.rglob("*.py"):
        for name in _imports(path):
            root = name.split(".")[0]
            if root in {"torch", "skimage", "sklearn", "tensorflow"}:
                offenders.append(f"{path.relative_to(SOURCE)} imports {name}")
            if root in {"pickle", "dill", "cloudpickle"} and path.name != "cifar.py":
                offenders.append(f"{path.relative_to(SOURCE)} imports {name}")
    assert not offenders, offenders


def test_importing_every_package_loads_no_test_oracle_or_optional_package():
    """PyTorch and onnx are imported inside the interop calls that ask for them, never before."""
    import subprocess
    import sys

    packages = sorted(
        f"cnnlab.{path.name}" for path in SOURCE.iterdir()
        if (path / "__init__.py").exists()
    )
    script = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in packages)
        + "print(sorted({'torch', 'onnx', 'onnxruntime', 'skimage'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]", result.stdout
