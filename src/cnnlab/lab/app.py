"""The lab's web app: the page, its files, and the API (CONTRACT.md "The lab" and the page's
own routes). Every answer is JSON; every error is {"error": "..."} with its status (see
cnnlab.lab.errors).

    GET  /                                   the page (with the session token)
    GET  /static/{file}                      the page's files (only those of static/)
    GET  /api/runs                           the runs (runs.RunCatalogue.run)
    GET  /api/runs/{name}/metrics            metrics.jsonl's records
    GET  /api/runs/{name}/curves             per-epoch records and the points within epochs
    GET  /api/runs/{name}/first-layer        first-layer filters or templates after each epoch
    GET  /api/runs/{name}/summary            cnnlab summary's records
    GET  /api/runs/{name}/confusion          the test (or validation) confusion matrix
    GET  /api/runs/{name}/test-images        ?label=&predicted=&misclassified=&offset=&limit=
    POST /api/runs/{name}/predict            body: an image file -> every class, most probable first
    POST /api/runs/{name}/inspect            ?test_index=&dy=&dx=, body: an image file (or none
                                             with test_index) -> predictions and every layer
    GET  /api/runs/{name}/receptive-field    ?layer=&row=&col= -> the input box it sees
    POST /api/runs/{name}/resume             (token) {"epochs": N}
    GET  /api/training                       the training job's state and output
    POST /api/training                       (token) start: {"model", "dataset", "epochs", ...}
    POST /api/training/stop                  (token) SIGINT, as Ctrl-C
    GET  /api/options                        models, datasets and their defaults, for the form
    GET  /api/events                         server-sent events: "update" when a run moves on

Model work runs in Starlette's thread pool, off the event loop.
"""

import asyncio
import contextlib
import json
import threading
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cnnlab.data import DATASETS
from cnnlab.lab.errors import BadRequest, LabError
from cnnlab.lab.images import decode_image, read_body
from cnnlab.lab.jobs import TrainingJob
from cnnlab.lab.model import Models
from cnnlab.lab.runs import RunCatalogue
from cnnlab.lab.security import Guard, HostCheck, check_token, new_token
from cnnlab.lab.testset import TestImages
from cnnlab.training.config import MODEL_DEFAULTS

POLL_SECONDS = 0.25  # how often the event stream looks for runs that moved on
MAX_JSON_BYTES = 64 * 1024
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".js": "text/javascript; charset=utf-8", ".png": "image/png",
               ".svg": "image/svg+xml"}


class Lab:
    """What the routes share: the run list, the models, the test images, the training job,
    the session token and the page's files."""

    def __init__(self, runs_dir, extra_runs=None, token=None):
        self.catalogue = RunCatalogue(runs_dir, extra=extra_runs)
        self.job = TrainingJob(self.catalogue)
        self.catalogue.training_now = self.job.training_now
        self.models = Models(self.catalogue)
        self.tests = TestImages(self.models)
        self.token = token or new_token()
        self.stopping = threading.Event()
        self.files = _static_files()

    def pixels(self, name, body, test_index):
        """The input of `inspect`: test image `test_index`, or the image file `body`,
        converted as `cnnlab predict` converts it. Returns (pixels, label or None)."""
        if test_index is not None:
            if body:
                raise BadRequest("give test_index or an image body, not both")
            return self.tests.image(name, test_index)
        shape = self.models.load(name).image_shape
        return decode_image(body, shape[1:], shape[0]), None


def _static_files() -> dict[str, tuple[bytes, str]]:
    """Every file of static/, read once: relative path -> (bytes, media type)."""
    root = resources.files("cnnlab.lab") / "static"
    found = {}

    def walk(folder, prefix):
        for item in folder.iterdir():
            if item.is_dir():
                walk(item, f"{prefix}{item.name}/")
            elif Path(item.name).suffix in MEDIA_TYPES:
                found[prefix + item.name] = (item.read_bytes(), MEDIA_TYPES[Path(item.name).suffix])

    walk(root, "")
    return found


# ----- the page ---------------------------------------------------------------------------------
def page(request):
    lab = request.app.state.lab
    html = lab.files["index.html"][0].decode().replace("{{token}}", lab.token)
    return HTMLResponse(html, headers={"cache-control": "no-store"})


def static(request):
    found = request.app.state.lab.files.get(request.path_params["path"])
    if found is None:
        raise HTTPException(404, f"no file {request.path_params['path']!r}")
    return Response(found[0], media_type=found[1], headers={"cache-control": "no-cache"})


# ----- runs -------------------------------------------------------------------------------------
def runs(request):
    return JSONResponse(request.app.state.lab.catalogue.runs())


def metrics(request):
    return JSONResponse(request.app.state.lab.catalogue.metrics(request.path_params["name"]))


def curves(request):
    return JSONResponse(request.app.state.lab.catalogue.curves(request.path_params["name"]))


def first_layer(request):
    return JSONResponse(request.app.state.lab.catalogue.first_layer(request.path_params["name"]))


# ----- inside the model -------------------------------------------------------------------------
def summary(request):
    return JSONResponse(request.app.state.lab.models.summary(request.path_params["name"]))


def confusion(request):
    return JSONResponse(request.app.state.lab.tests.confusion(request.path_params["name"]))


def test_images(request):
    query = request.query_params
    misclassified = query.get("misclassified", "false")
    if misclassified not in ("true", "false"):
        raise BadRequest(f"misclassified must be true or false, got {misclassified!r}")
    return JSONResponse(request.app.state.lab.tests.page(
        request.path_params["name"], label=_int(query, "label"),
        predicted=_int(query, "predicted"), misclassified=misclassified == "true",
        offset=_int(query, "offset", 0), limit=_int(query, "limit", 48)))


async def predict(request):
    lab, name = request.app.state.lab, request.path_params["name"]
    shape = (await run_in_threadpool(lab.models.load, name)).image_shape
    body = await read_body(request)
    pixels = await run_in_threadpool(decode_image, body, shape[1:], shape[0])
    return JSONResponse({"predictions": await run_in_threadpool(lab.models.predict, name,
                                                                pixels)})


async def inspect(request):
    lab, name, query = request.app.state.lab, request.path_params["name"], request.query_params
    shift = (_int(query, "dy", 0), _int(query, "dx", 0))
    test_index = _int(query, "test_index")
    await run_in_threadpool(lab.catalogue.entry, name)  # a name of the listing, first
    body = await read_body(request)

    def work():
        pixels, label = lab.pixels(name, body, test_index)
        return {**lab.models.inspect(name, pixels, shift), "label": label,
                "test_index": test_index}

    return JSONResponse(await run_in_threadpool(work))


def receptive_field(request):
    query = request.query_params
    return JSONResponse(request.app.state.lab.models.receptive_field(
        request.path_params["name"], query.get("layer", ""), _int(query, "row", required=True),
        _int(query, "col", required=True)))


# ----- training ---------------------------------------------------------------------------------
def training(request):
    return JSONResponse(request.app.state.lab.job.status())


async def start_training(request):
    lab = request.app.state.lab
    check_token(request.headers, lab.token)
    options = await _json_body(request)
    return JSONResponse(await run_in_threadpool(lab.job.start, options), 202)


def stop_training(request):
    lab = request.app.state.lab
    check_token(request.headers, lab.token)
    return JSONResponse(lab.job.stop(), 202)


async def resume(request):
    lab = request.app.state.lab
    check_token(request.headers, lab.token)
    options = await _json_body(request)
    return JSONResponse(await run_in_threadpool(lab.job.resume, request.path_params["name"],
                                                options), 202)


def options(request):
    return JSONResponse({"models": list(MODEL_DEFAULTS), "datasets": list(DATASETS),
                         "defaults": {name: row._asdict() for name, row in
                                      MODEL_DEFAULTS.items()}})


async def events(request):
    """Server-sent events: an "update" ({"runs", "changed" (names), "training"}) at once, then
    whenever a run's files or status or the training job change (looked at every
    POLL_SECONDS); ends when the lab stops."""
    lab = request.app.state.lab

    async def stream():
        yield "retry: 1000\n\n"
        seen, seen_job = None, None
        while not lab.stopping.is_set():
            signature = await run_in_threadpool(lab.catalogue.signature)
            job = lab.job.status()
            job_key = (job["state"], job["run"], len(job["log"]), job["log"][-1:])
            if signature != seen or job_key != seen_job:
                previous = seen or {}
                changed = sorted(name for name in signature.keys() | previous.keys()
                                 if signature.get(name) != previous.get(name))
                update = {"runs": await run_in_threadpool(lab.catalogue.runs),
                          "changed": changed, "training": job}
                yield f"event: update\ndata: {json.dumps(update)}\n\n"
                seen, seen_job = signature, job_key
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"cache-control": "no-store"})


# ----- parameters and errors --------------------------------------------------------------------
def _int(query, key, default=None, required=False):
    text = query.get(key)
    if text is None or text == "":
        if required:
            raise BadRequest(f"{key} is required (an integer)")
        return default
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"{key} must be an integer, got {text!r}") from None


async def _json_body(request):
    body = await read_body(request, limit=MAX_JSON_BYTES)
    if not body:
        return None
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest(f"the body is not JSON: {error}") from None


async def _lab_error(request, error: LabError):
    return JSONResponse({"error": str(error)}, error.status)


async def _http_error(request, error: HTTPException):
    return JSONResponse({"error": str(error.detail)}, error.status_code)


async def _internal_error(request, error: Exception):
    return JSONResponse({"error": f"internal error: {type(error).__name__}: {error}"}, 500)


ROUTES = [
    Route("/", page),
    Route("/static/{path:path}", static),
    Route("/api/runs", runs),
    Route("/api/runs/{name}/metrics", metrics),
    Route("/api/runs/{name}/curves", curves),
    Route("/api/runs/{name}/first-layer", first_layer),
    Route("/api/runs/{name}/summary", summary),
    Route("/api/runs/{name}/confusion", confusion),
    Route("/api/runs/{name}/test-images", test_images),
    Route("/api/runs/{name}/predict", predict, methods=["POST"]),
    Route("/api/runs/{name}/inspect", inspect, methods=["POST"]),
    Route("/api/runs/{name}/receptive-field", receptive_field),
    Route("/api/runs/{name}/resume", resume, methods=["POST"]),
    Route("/api/training", training),
    Route("/api/training", start_training, methods=["POST"]),
    Route("/api/training/stop", stop_training, methods=["POST"]),
    Route("/api/options", options),
    Route("/api/events", events),
]


def create_app(runs_dir, host="127.0.0.1", port=8000, extra_runs=None, token=None) -> Starlette:
    """The lab over RUNS_DIR, served at host:port (for the Host check).

    Args:
        runs_dir: RUNS_DIR, whose sub-folders holding a run are the runs.
        host, port: where the lab is reached; requests naming another Host are refused.
        extra_runs: {name: run folder} of read-only runs shown beside RUNS_DIR's (the
            package's pretrained runs). Default: none.
        token: the session token. Default: a new random one.
    """
    lab = Lab(runs_dir, extra_runs, token)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        lab.stopping.set()
        await run_in_threadpool(lab.job.close)

    app = Starlette(
        routes=ROUTES, lifespan=lifespan,
        middleware=[Middleware(Guard, host_check=HostCheck(host, port))],
        exception_handlers={LabError: _lab_error, HTTPException: _http_error,
                            Exception: _internal_error})
    app.state.lab = lab
    return app
