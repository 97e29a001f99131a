"""`cnnlab lab`: parse the flags, call cnnlab.lab.server.serve."""

import argparse

from cnnlab.cli.common import add_command, add_debug
from cnnlab.lab import missing_dependencies

LAB_EPILOG = """\
The lab reads RUN_DIRs as `cnnlab train` writes them (runs made later appear by themselves)
and trains from the page with the same `cnnlab train`, one run at a time.

Security: it listens on 127.0.0.1 unless --host says otherwise (with a warning); it answers
only requests that name it in their Host header; starting and stopping training needs the
token in the page it serves; uploads are limited to 10 MB and must be images.

examples:
  cnnlab lab                          the runs in ./runs, at http://127.0.0.1:8000/
  cnnlab lab runs/compare --port 0    any free port (the first line says which)"""


def _port(text):
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 0..65535, got {port}")
    return port


def add_commands(commands):
    """Add `lab` to the `cnnlab` subparsers; it sets `handler`."""
    parser = add_command(commands, "lab", "watch runs train and look inside them, in a browser",
                         "Serve the lab, a local web page over RUNS_DIR: the runs, live training "
                         "curves, training from the page, and inside each model (summary, "
                         "activations, receptive fields, predictions). Ctrl-C stops it.",
                         LAB_EPILOG)
    parser.add_argument("runs_dir", nargs="?", default="runs", metavar="RUNS_DIR",
                        help="the folder of run directories (default: runs)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=_port, default=8000,
                        help="port (default: 8000; 0: any free port)")
    add_debug(parser)
    parser.set_defaults(handler=_lab)


def _lab(args):
    missing = missing_dependencies()
    if missing:
        raise ValueError(f"cnnlab lab needs {' and '.join(missing)}: install the lab extra, "
                         "pip install 'cnnlab[lab]'")
    from cnnlab.lab.server import serve  # the web stack, only now it is known to be there

    serve(args.runs_dir, host=args.host, port=args.port)
