"""Build the lecture's notebooks, NN_name.ipynb, from their cell sources, cells/NN_name.py.

    python notebooks/_build.py            # rewrite every notebook from its source
    python notebooks/_build.py --check    # exit 1, naming them, if notebooks differ from sources

A source is a Python file in the "percent" format: a line `# %%` starts a code cell and
`# %% [markdown]` a text cell, whose lines are comments ("# " is removed); in code cells, a
commented IPython magic ("# %matplotlib inline") is uncommented. The notebooks are
written without outputs, with fixed cell ids (so rebuilding changes nothing that did not
change), and carry their time budget in their metadata ("cnnlab": {"budget_seconds": ...}),
which tests/test_notebooks.py holds them to when it executes them.
"""

import re
import sys
from pathlib import Path

import nbformat

FOLDER = Path(__file__).resolve().parent
# name -> budget in seconds: the test stops a notebook that runs longer. Each runs in well under
# a minute on an idle 2-core machine; the budget leaves room for a loaded one.
NOTEBOOKS = {
    "01_scores_from_pixels": 120,
    "02_backpropagation": 120,
    "03_features_vs_learned": 240,
    "04_convolution": 120,
    "05_receptive_fields_and_pooling": 120,
    "06_translation_equivariance": 120,
    "07_what_the_network_looks_at": 120,
}
MARKER = "# %%"
MAGIC = re.compile(r"# %[a-z]")  # an IPython magic, commented in the source: "# %matplotlib inline"


def cells(source: str):
    """The cells of a percent-format source, as (kind, text) pairs: "markdown" or "code"."""
    found, kind, lines = [], None, []
    for line in source.splitlines() + [MARKER]:
        if line.startswith(MARKER):
            text = "\n".join(lines).strip("\n")
            if kind is not None and text:
                found.append((kind, text))
            kind = "markdown" if "[markdown]" in line else "code"
            lines = []
        elif kind == "markdown":
            lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        else:
            lines.append(line[2:] if MAGIC.match(line) else line)
    return found


def build(name: str) -> str:
    """The notebook `name` as the text of an .ipynb file, from cells/<name>.py."""
    notebook = nbformat.v4.new_notebook()
    for index, (kind, text) in enumerate(cells((FOLDER / "cells" / f"{name}.py").read_text())):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        notebook.cells.append(make(text, id=f"cell-{index:02d}"))
    notebook.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "cnnlab": {"budget_seconds": NOTEBOOKS[name]},
    }
    nbformat.validate(notebook)
    return nbformat.writes(notebook) + "\n"


def main(argv) -> int:
    stale = [name for name in NOTEBOOKS
             if not (FOLDER / f"{name}.ipynb").exists()
             or (FOLDER / f"{name}.ipynb").read_text() != build(name)]
    if "--check" in argv:
        for name in stale:
            print(f"notebooks/{name}.ipynb differs from notebooks/cells/{name}.py", file=sys.stderr)
        return 1 if stale else 0
    from cnnlab.files import atomic_write

    for name in stale:
        atomic_write(FOLDER / f"{name}.ipynb", build(name).encode())
        print(f"wrote notebooks/{name}.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
