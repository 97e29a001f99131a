"""The lecture's notebooks (notebooks/NN_name.ipynb) run top to bottom in a fresh kernel within
their time budget and draw pictures, and are committed clean: without outputs or execution
counts, exactly as notebooks/_build.py makes them from notebooks/cells/NN_name.py.

One test per notebook, so that `pytest -n 2` runs two notebooks at once. The kernel inherits
this process's environment (PYTHONPATH, OPENBLAS_NUM_THREADS) and runs in a temporary folder.
"""

import importlib.util
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

FOLDER = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = sorted(path.stem for path in FOLDER.glob("*.ipynb"))


def _builder():
    spec = importlib.util.spec_from_file_location("notebooks_build", FOLDER / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = _builder()


def _read(name):
    return nbformat.read(FOLDER / f"{name}.ipynb", as_version=4)


def test_the_lecture_has_its_notebooks():
    assert len(NAMES) >= 6
    assert NAMES == sorted(BUILD.NOTEBOOKS), "every notebook has a source and a budget"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs_as_built(name):
    code = [cell for cell in _read(name).cells if cell.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [], f"{name}: cell {cell.id} has outputs"
        assert cell.execution_count is None, f"{name}: cell {cell.id} has an execution count"
    assert (FOLDER / f"{name}.ipynb").read_text() == BUILD.build(name), (
        f"{name}.ipynb differs from cells/{name}.py: run python notebooks/_build.py"
    )


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_within_its_budget_and_draws(name, tmp_path):
    notebook = _read(name)
    budget = notebook.metadata["cnnlab"]["budget_seconds"]
    client = NotebookClient(notebook, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    deadline = time.monotonic() + budget
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            # The budget is the notebook's: each cell may use what the cells before it left.
            client.timeout = max(1, int(deadline - time.monotonic()))
            client.execute_cell(cell, index)  # raises on an error, or when the budget runs out
    pictures = [output for cell in notebook.cells if cell.cell_type == "code"
                for output in cell.outputs if "image/png" in output.get("data", {})]
    assert pictures, f"{name} drew no picture"
