"""Dependencies point one way: formulas, ops, tensor, nn, then the libraries built on nn,
then analysis/viz/train, then the command line. PyTorch and scikit-image are test oracles only,
and pickle is confined to the restricted CIFAR-10 reader."""

import ast
import pathlib

SOURCE = pathlib.Path(__file__).resolve().parent.parent / "src" / "cnnlab"

LAYER = {
    "shapes": 0, "errors": 0, "files": 0, "rng": 0, "threads": 0, "blas": 0, "allocator": 0,
    "ops": 1,
    "tensor": 2, "gradcheck": 2,
    "nn": 3,
    "optim": 4, "models": 4, "data": 4, "features": 4, "checkpoint": 4,
    "metrics": 4,
    "analysis": 5, "viz": 5, "train": 5, "compare": 5, "pictures": 5,
    "config": 5, "rundir": 5, "inputs": 5, "runs": 5,
    "cli": 6, "cli_lab": 6,
    "explain": 6,
    "__main__": 7,
}  # fmt: skip


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def _part(path):
    relative = path.relative_to(SOURCE)
    return relative.parts[0].removesuffix(".py")


def test_every_source_file_belongs_to_a_known_layer():
    unknown = {_part(p) for p in SOURCE.rglob("*.py")} - set(LAYER) - {"__init__"}
    assert not unknown, f"add these to LAYER: {unknown}"


def test_imports_point_down_the_layers():
    upward = []
    for path in SOURCE.rglob("*.py"):
        if path == SOURCE / "__init__.py":
            continue
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "cnnlab" and len(parts) > 1 and LAYER[parts[1]] > LAYER[_part(path)]:
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
