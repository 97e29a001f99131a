"""The lab: a local web page that watches runs train and looks inside their models.

    cnnlab lab runs/                       # serves http://127.0.0.1:8000/

The server reads run directories (as TensorBoard reads log folders) and calls the library for
every number the page shows; training writes the run directories, as `cnnlab train` does,
in a subprocess the page starts and stops. Where each part lives:

    server.py    `serve`: the socket, the first line on stdout, uvicorn, Ctrl-C
    app.py       the routes (the API of CONTRACT.md "The lab" and the page's own), JSON errors
    security.py  the Host check (DNS rebinding), the session token, the page's headers
    runs.py      the run list, a run's curves and first-layer weights (cnnlab.training)
    model.py     inside a model: summary, predictions, activations, receptive fields,
                 equivariance (cnnlab.analysis, cnnlab.training.trained)
    images.py    uploaded image files (size cap, decompression bombs) and test images
    jobs.py      the one training subprocess: start, stop (Ctrl-C's SIGINT), resume
    static/      the page: index.html, app.css and one ES module per view in js/

The web stack (Starlette, uvicorn) is the optional extra `lab`; importing this package does
not load it, so `missing_dependencies()` can name what is missing.
"""

import importlib.util

REQUIREMENTS = ("starlette", "uvicorn")


def missing_dependencies() -> list[str]:
    """The lab's web packages that are not installed (pip install 'cnnlab[lab]' adds them)."""
    return [name for name in REQUIREMENTS if importlib.util.find_spec(name) is None]


__all__ = ["missing_dependencies"]
