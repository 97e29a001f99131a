"""The lab's guards and its training and life cycle: the Host check (DNS rebinding), the
session token for starting and stopping training, the page's security headers, training
options checked before anything starts, one training at a time and Stop as Ctrl-C, the event
stream on a live server, and `cnnlab lab` itself (its first line, Ctrl-C, a missing extra,
bad arguments)."""

import asyncio
import json
import re
import shutil
import socket
import threading
import time
import warnings

import httpx
import pytest
import uvicorn

from cnnlab.cli import main
from cnnlab.lab import missing_dependencies
from cnnlab.lab.app import create_app
from cnnlab.lab.security import HostCheck, is_loopback
from cnnlab.lab.server import bind
from cnnlab.training.rundir import holds_run
from lab_helpers import error_of, folder_runs, start_lab, stop_lab

with warnings.catch_warnings():  # Starlette 1.x asks for httpx2 in its test client; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TOKEN = "test-token"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """Two runs on a small folder dataset (see folder_runs) and a folder that is not a run."""
    runs = folder_runs(tmp_path_factory.mktemp("lab"))
    (runs / "notes").mkdir()
    return runs


@pytest.fixture(scope="module")
def client(runs_dir):
    with TestClient(create_app(runs_dir, port=8000, token=TOKEN),
                    base_url="http://127.0.0.1:8000") as client:
        yield client


# ----- the Host check and the token -------------------------------------------------------
@pytest.mark.parametrize("host", ["evil.example:8000", "evil.example", "127.0.0.1:9000",
                                  "localhost.evil.example:8000", ""])
def test_a_host_header_that_is_not_the_labs_is_refused(client, host):
    for path in ("/", "/api/runs", "/api/runs/shapes/metrics", "/static/js/main.js"):
        assert "Host header" in error_of(client.get(path, headers={"host": host}), 403)


def test_the_labs_own_names_are_served(client):
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST:8000"):
        assert client.get("/api/runs", headers={"host": host}).status_code == 200


def test_host_check_for_other_bindings():
    specific = HostCheck("192.168.1.5", 8080)
    assert specific.allows("192.168.1.5:8080") and specific.allows("localhost:8080")
    assert not specific.allows("192.168.1.6:8080") and not specific.allows("evil.example:8080")
    everywhere = HostCheck("0.0.0.0", 8080)
    assert everywhere.allows("10.0.0.7:8080") and everywhere.allows("[fe80::1]:8080")
    assert not everywhere.allows("evil.example:8080") and not everywhere.allows("10.0.0.7:80")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_the_page_carries_the_token_and_a_content_security_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and f'content="{TOKEN}"' in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy
    assert "<script>" not in page.text  # modules only, no inline script
    script = client.get("/static/js/main.js")
    assert script.headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize("method, path", [("post", "/api/training"),
                                          ("post", "/api/training/stop"),
                                          ("post", "/api/runs/stopped/resume")])
def test_starting_and_stopping_training_needs_the_token(client, method, path):
    for headers in ({}, {"x-cnnlab-token": "wrong"}, {"x-cnnlab-token": ""}):
        assert "token" in error_of(getattr(client, method)(path, json={}, headers=headers), 403)
    assert client.get("/api/training").json()["state"] == "idle"


def test_training_options_are_checked_before_anything_starts(client, runs_dir):
    token = {"x-cnnlab-token": TOKEN}
    for options, status in (
        ({"model": "resnet"}, 400), ({"epochs": 0}, 400), ({"epochs": "2"}, 400),
        ({"lr": -1}, 400), ({"augment": "yes"}, 400), ({"dataset": "folder:/etc"}, 400),
        ({"out": "/tmp/x"}, 400), ({"name": "../escape"}, 400), ({"name": ".hidden"}, 400),
        ({"name": "shapes"}, 409), ({"name": "notes"}, 409), ([1, 2], 400),
    ):
        error_of(client.post("/api/training", json=options, headers=token), status)
    error_of(client.post("/api/training", content=b"{not json", headers=token), 400)
    error_of(client.post("/api/training/stop", headers=token), 409)  # nothing runs
    error_of(client.post("/api/runs/nope/resume", json={}, headers=token), 404)
    error_of(client.post("/api/runs/stopped/resume", json={"epochs": 0}, headers=token), 400)
    error_of(client.post("/api/runs/stopped/resume", json={"lr": 1}, headers=token), 400)
    assert client.get("/api/training").json()["state"] == "idle"
    assert not (runs_dir / "escape").exists()


def wait_until(condition, timeout=60.0, what="the condition"):
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_one_training_at_a_time_and_stop_sends_sigint(client, runs_dir):
    token = {"x-cnnlab-token": TOKEN}
    # far more epochs than the test lets it train: the run cannot finish before Stop arrives,
    # however the machine's load delays the test (5 epochs of 1,000 images once did)
    options = {"model": "mlp", "dataset": "fashion-mnist", "epochs": 500, "limit_train": 1000,
               "name": "from-the-page"}
    path = runs_dir / "from-the-page"
    try:
        started = client.post("/api/training", json=options, headers=token)
        assert started.status_code == 202, started.text
        assert started.json()["state"] == "running" and started.json()["run"] == "from-the-page"
        assert started.json()["command"] == (
            f"cnnlab train --model mlp --dataset fashion-mnist --epochs 500 --limit-train 1000 "
            f"--out {path}")
        error_of(client.post("/api/training", json={"name": "second"}, headers=token), 409)
        error_of(client.post("/api/runs/stopped/resume", json={}, headers=token), 409)
        wait_until(lambda: holds_run(path), what="the run's first state")
        runs = {run["name"]: run for run in client.get("/api/runs").json()}
        assert runs["from-the-page"]["status"] == "training"
        stopping = client.post("/api/training/stop", headers=token)
        assert stopping.status_code == 202 and stopping.json()["state"] == "stopping"
        error_of(client.post("/api/training/stop", headers=token), 409)  # SIGINT only once
        client.app.state.lab.job.process.wait(60)
        status = client.get("/api/training").json()
        assert status["state"] == "stopped" and status["returncode"] == 130, status
        runs = {run["name"]: run for run in client.get("/api/runs").json()}
        assert runs["from-the-page"]["status"] == "stopped"
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ----- the event stream, on a live server -------------------------------------------------
def test_the_labs_connections_send_small_answers_at_once():
    """uvicorn serves the socket of `bind` through asyncio, which turns Nagle's algorithm off
    on the connections it accepts only when they are made for TCP; else every small answer
    waits for the client's delayed acknowledgement."""
    async def accept_one():
        sock = bind("127.0.0.1", 0)
        accepted = asyncio.get_running_loop().create_future()

        class Connection(asyncio.Protocol):
            def connection_made(self, transport):
                option = transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP,
                                                                       socket.TCP_NODELAY)
                accepted.set_result(option)

        server = await asyncio.get_running_loop().create_server(Connection, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname())
        option = await accepted
        writer.close()
        server.close()
        await server.wait_closed()
        return option

    assert asyncio.run(accept_one()) != 0


def test_the_event_stream_announces_runs_that_move_on(runs_dir):
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = create_app(runs_dir, port=port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        with httpx.stream("GET", f"http://127.0.0.1:{port}/api/events", timeout=30) as stream:
            updates = (json.loads(line[len("data: "):]) for line in stream.iter_lines()
                       if line.startswith("data: "))
            first = next(updates)
            assert {run["name"] for run in first["runs"]} == {"shapes", "stopped"}
            assert first["training"]["state"] == "idle"
            shutil.copytree(runs_dir / "shapes", runs_dir / "shapes-live")
            second = next(updates)
            assert second["changed"] == ["shapes-live"]
            assert "shapes-live" in {run["name"] for run in second["runs"]}
    finally:
        shutil.rmtree(runs_dir / "shapes-live", ignore_errors=True)
        app.state.lab.stopping.set()
        server.should_exit = True
        thread.join(30)
        sock.close()
    assert not thread.is_alive()


# ----- cnnlab lab -------------------------------------------------------------------------
def test_cnnlab_lab_prints_its_url_first_and_ctrl_c_ends_it(runs_dir):
    process, url = start_lab(runs_dir)
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
        runs = {run["name"]: run["source"] for run in httpx.get(url + "api/runs").json()}
        assert runs == {"shapes": "runs", "stopped": "runs",  # and the shipped ones, read-only
                        "pretrained:cnn-fashion-mnist": "pretrained",
                        "pretrained:linear-fashion-mnist": "pretrained"}
        assert httpx.get(url).headers["content-type"].startswith("text/html")
    finally:
        status = stop_lab(process)
    assert status == 0


def test_cnnlab_lab_names_the_extra_when_the_web_stack_is_missing(monkeypatch, capsys):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert missing_dependencies() == ["starlette", "uvicorn"]
    assert main(["lab"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "pip install 'cnnlab[lab]'" in error


def test_cnnlab_lab_bad_arguments_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for argv in (["lab", "--port", "70000"], ["lab", "--port", "http"],
                 ["lab", str(tmp_path / "file"), "--port", "0"]):
        assert main(argv) == 2
        error = capsys.readouterr().err
        assert error.startswith("error: ") and error.count("\n") == 1
