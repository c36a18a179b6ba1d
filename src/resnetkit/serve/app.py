"""The HTTP API: ``POST /v1/predict``, ``POST /v1/explain``, ``GET /v1/model``, ``GET /healthz``, the page at ``/``.

A model is loaded once (:func:`load_for_serving`); predictions go through one
:class:`~.batching.DynamicBatcher` whose worker calls the loaded model's ``predict`` on whole
batches (the run's optimized inference module). Explanations run the run's PyTorch model,
one at a time, in a thread of their own. Every failure is answered with a status and a
``{"detail": message}`` body, and the server goes on serving.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from ..version import __version__
from .batching import DynamicBatcher, QueueFull
from .config import ServeConfig
from .uploads import UploadError, check_kind, read_upload

log = logging.getLogger(__name__)

# Explanations waiting for the one explain thread beyond this many are refused with 503.
MAX_PENDING_EXPLAIN = 8
RETRY_AFTER_S = 1


def load_for_serving(path: str | Path, device: str = "auto") -> Any:
    """Load what ``--checkpoint`` names: a run directory, a .pt checkpoint or an exported file (.onnx, .pt2, TorchScript)."""
    from ..engine.inference import load_model

    return load_model(path, device=device)


class ClassProbability(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_: str = Field(alias="class", description="class name")
    index: int = Field(description="class index in the model's output")
    probability: float


class Prediction(BaseModel):
    top_k: list[ClassProbability]
    labels: Optional[list[str]] = Field(None, description="multi-label models: the labels at or above their "
                                        "thresholds, most probable first")
    probabilities: Optional[dict[str, float]] = Field(None, description="multi-label models: every label's "
                                                      "(calibrated) probability, each on its own")
    thresholds: Optional[dict[str, float]] = Field(None, description="multi-label models: each label's threshold")
    model: str
    latency_ms: float = Field(description="time spent in the server, from request to answer")


class ModelInfo(BaseModel):
    name: str
    kind: str
    classes: list[str]
    num_classes: int
    task: str = Field("single", description="single (one class per input) or multilabel (any number of labels)")
    input: dict
    parameters: Optional[int]
    source: str
    explain: bool
    explain_unavailable: Optional[str] = None
    batching: dict


class ErrorMessage(BaseModel):
    detail: str


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "One image (JPEG, PNG, GIF, BMP, WebP, TIFF) or audio file (WAV, FLAC, OGG, AIFF), "
                       "recognised by its content: as the raw body, or as the field 'file' of a multipart form.",
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                               "properties": {"file": {"type": "string", "format": "binary"}}}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
ERRORS = {
    400: {"model": ErrorMessage,
          "description": "empty, corrupt or unreadable file (decompression bomb, absurd header)"},
    413: {"model": ErrorMessage, "description": "upload above the size limit"},
    415: {"model": ErrorMessage, "description": "not an image or audio file, or not the kind the model reads"},
    503: {"model": ErrorMessage, "description": "the request queue is full; retry after Retry-After seconds"},
    504: {"model": ErrorMessage, "description": "not answered within the server's timeout"},
}


class _Failure(Exception):
    def __init__(self, status: int, message: str, headers: Optional[dict] = None) -> None:
        self.status, self.message, self.headers = status, message, headers


def _error(status: int, message: str, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _static_dir() -> Path:
    return Path(str(resources.files("resnetkit.serve") / "static"))


def _new_app(**kwargs: Any) -> FastAPI:
    try:  # Swagger UI's files from a package instead of a CDN: /docs works on machines without internet
        from fastapi_offline import FastAPIOffline
    except ImportError:
        return FastAPI(**kwargs)
    return FastAPIOffline(**kwargs)


def create_app(loaded: Any, config: ServeConfig = ServeConfig()) -> FastAPI:
    """The FastAPI app serving ``loaded`` (a LoadedRun, or a loaded exported model with the same surface)."""
    from ..explain import class_index, explain_inputs, explain_unavailable

    config.validate()
    name = str(getattr(loaded, "model_name", "model"))
    kind = str(getattr(loaded, "kind", None) or loaded.input_spec.kind)
    classes = [str(c) for c in loaded.classes]
    no_explain = explain_unavailable(loaded)

    def run_batch(items, top_k):
        return loaded.predict(list(items), top_k=top_k)

    batcher = DynamicBatcher(run_batch, config.max_batch, config.max_wait_ms, config.max_queue)
    explain_lock = threading.Lock()  # Grad-CAM hooks the model: one explanation at a time
    pending_explain = 0

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        warm = getattr(loaded, "inference_model", None)
        if callable(warm):
            await run_in_threadpool(warm)  # build the optimized module before the first request
        # torch, the model and the app are hundreds of thousands of long-lived objects. Python's
        # full collections walked them all, a stall of about 350 ms for every request in flight
        # (p99 at 32 clients 503 ms, p95 146 ms); frozen, they are no longer walked (p99 160 ms).
        gc.collect()
        gc.freeze()
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()

    app = _new_app(title="resnetkit", version=__version__, lifespan=lifespan,
                   description=f"{name}: {kind} classification ({len(classes)} classes) with Grad-CAM explanations.")
    app.state.batcher = batcher
    app.state.loaded = loaded
    app.state.serve_config = config  # the connection limits of serve() and BackgroundServer
    app.mount("/static", StaticFiles(directory=_static_dir()), name="static")

    async def guarded(request: Request, work) -> Any:
        """Run ``work(data)`` on the upload under the request timeout, mapping failures to statuses."""
        async def handle():
            data = await read_upload(request, config.max_upload_bytes)
            check_kind(data, kind)
            return await work(data)

        try:
            return await asyncio.wait_for(handle(), timeout=config.timeout_s)
        except UploadError as err:
            return _error(err.status, err.message)
        except _Failure as err:
            return _error(err.status, err.message, err.headers)
        except asyncio.TimeoutError:
            return _error(504, f"no answer within {config.timeout_s:g} s (the server's timeout); try again later")
        except Exception as err:  # a bug or a broken model: the client gets a status and a reason, the log one line
            reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            log.error("%s %s failed: %s", request.method, request.url.path, reason)
            return _error(500, f"the server failed on this request ({reason})")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(_static_dir() / "index.html", media_type="text/html")

    @app.get("/healthz", summary="Liveness and batching counters")
    async def healthz() -> dict:
        return {"status": "ok", "model": name, "queued": batcher.queued, **batcher.stats.to_dict()}

    @app.get("/v1/model", response_model=ModelInfo, summary="The served model: name, classes, input, parameters")
    async def model_info() -> dict:
        spec = loaded.input_spec
        model = getattr(loaded, "model", None)
        params = sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else 0
        params = params or None  # an exported file (onnxruntime) has no PyTorch parameters to count
        return {"name": name, "kind": kind, "classes": classes, "num_classes": len(classes),
                "task": getattr(loaded, "task", "single"), "input": spec.to_dict(), "parameters": params,
                "source": Path(str(getattr(loaded, "path", name))).name,
                "explain": no_explain is None, "explain_unavailable": no_explain,
                "batching": {"max_batch": config.max_batch, "max_wait_ms": config.max_wait_ms,
                             "max_queue": config.max_queue}}

    @app.post("/v1/predict", response_model=Prediction, responses=ERRORS, openapi_extra=UPLOAD_BODY,
              summary="Top-k classes of one image or audio file")
    async def predict(request: Request,
                      top_k: int = Query(config.top_k, ge=1, description="how many classes to return")) -> Any:
        start = time.perf_counter()

        async def work(data: bytes):
            try:
                result = await batcher.submit(data, top_k)
            except QueueFull:
                raise _Failure(503, f"busy: {config.max_queue} requests are waiting; retry in {RETRY_AFTER_S} s",
                               {"Retry-After": str(RETRY_AFTER_S)}) from None
            if "error" in result:
                raise _Failure(400, result["error"])
            # A response object skips re-validating our own output against the documented model.
            answer = {"top_k": result["top_k"][:top_k], "model": name}
            answer.update({key: result[key] for key in ("labels", "probabilities", "thresholds") if key in result})
            return JSONResponse({**answer, "latency_ms": round((time.perf_counter() - start) * 1000, 3)})

        return await guarded(request, work)

    @app.post("/v1/explain", responses={200: {"content": {"image/png": {}}, "description": "the Grad-CAM PNG"},
                                        409: {"model": ErrorMessage,
                                              "description": "an exported model: no explanations"},
                                        **ERRORS},
              response_class=Response, openapi_extra=UPLOAD_BODY,
              summary="Grad-CAM of one image or audio file, as a PNG")
    async def explain(request: Request,
                      target: Optional[str] = Query(
                          None, description="class name or index (default: the predicted class; multi-label "
                          "models: the most probable label they predict)"),
                      method: str = Query("gradcam", pattern="^(gradcam|gradcam\\+\\+)$"),
                      top_k: int = Query(config.top_k, ge=1)) -> Any:
        if no_explain:
            return _error(409, no_explain)
        if target is not None:
            try:
                class_index(classes, target)
            except ValueError as err:
                return _error(400, str(err))

        def draw(data: bytes) -> bytes:
            with explain_lock:
                # A multi-label model explains each label it predicts, most probable first: the first is drawn.
                result = explain_inputs(loaded, [data], target=target, method=method, top_k=top_k)[0]
                if result.error:
                    raise _Failure(400, result.error)
                return result.png()

        async def work(data: bytes):
            nonlocal pending_explain
            if pending_explain >= MAX_PENDING_EXPLAIN:
                raise _Failure(503, f"busy: {pending_explain} explanations are waiting; retry in {RETRY_AFTER_S} s",
                               {"Retry-After": str(RETRY_AFTER_S)})
            pending_explain += 1
            try:
                png = await run_in_threadpool(draw, data)
            finally:
                pending_explain -= 1
            return Response(png, media_type="image/png")

        return await guarded(request, work)

    return app

