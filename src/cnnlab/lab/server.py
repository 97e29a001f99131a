"""`serve`: the lab on a socket, until Ctrl-C.

    serve("runs", host="127.0.0.1", port=0)   # prints "cnnlab lab: http://127.0.0.1:PORT/"

The socket is bound first, so that port 0 (any free port) is known before the first line is
printed and the Host check is set up for it. uvicorn then serves the app on it, quietly (no
access log); Ctrl-C stops the event streams, sends a training subprocess its SIGINT, waits
for it to save, and returns.
"""

import socket
import sys
import warnings
from pathlib import Path

import uvicorn

from cnnlab.lab.app import create_app
from cnnlab.lab.security import is_loopback, url_host


class _Server(uvicorn.Server):
    """uvicorn's server, telling the lab at the first Ctrl-C, so that its event streams end
    and the graceful shutdown need not wait for them."""

    def __init__(self, config, on_exit):
        super().__init__(config)
        self.on_exit = on_exit

    def handle_exit(self, sig, frame):
        self.on_exit()
        super().handle_exit(sig, frame)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket at host:port (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(error.errno, f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(runs_dir="runs", host="127.0.0.1", port=8000, extra_runs=None, out=None) -> None:
    """Serve the lab over RUNS_DIR at host:port until Ctrl-C; the first line on `out`
    (default stdout) is `cnnlab lab: http://HOST:PORT/`.

    Raises:
        ValueError for a RUNS_DIR that is not a folder; OSError when the port is taken.
    """
    runs_dir = Path(runs_dir)
    if runs_dir.exists() and not runs_dir.is_dir():
        raise ValueError(f"RUNS_DIR {runs_dir}: exists and is not a folder")
    if not is_loopback(host):
        warnings.warn(f"--host {host}: the lab can be reached from other machines; anyone "
                      "who reaches it sees your runs and can send it images", stacklevel=2)
    sock = bind(host, port)
    port = sock.getsockname()[1]
    app = create_app(runs_dir, host=host, port=port, extra_runs=extra_runs)
    out = out or sys.stdout
    print(f"cnnlab lab: http://{url_host(host)}:{port}/", file=out, flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5)
    server = _Server(config, on_exit=app.state.lab.stopping.set)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn raises the Ctrl-C it caught again once it has stopped
        pass
    finally:
        sock.close()
