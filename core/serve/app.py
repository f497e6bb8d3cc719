"""The ASGI app behind ``clf serve``: routes, limits and JSON errors around a predictor.

Prediction is exactly ``clf predict``'s: the same ``Predictor`` (opened by
``load_predictor``) and the same decoding, centre crop and resize (``Predictor.decode``);
only the batching differs, which the :class:`MicroBatcher` does across requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Mapping

import numpy as np

from clf.artifacts.predict import Prediction
from clf.serve.batcher import MicroBatcher, QueueFull
from clf.serve.uploads import Problem, Upload, check_image, parse_uploads, read_body, why_undecodable

if TYPE_CHECKING:
    from starlette.exceptions import HTTPException
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from clf.artifacts.predict import Predictor


@dataclass(frozen=True)
class ServeSettings:
    """The server's knobs; every limit has a CLI flag of the same name."""

    max_batch: int = 32  # images in one model call
    batch_window_ms: float = 5.0  # how long the first request waits for company
    max_queue: int = 256  # images waiting for the model (and requests in progress) before 503
    max_upload_bytes: int = 32 * 2**20  # one request's body
    max_pixels: int = 50_000_000  # one image's width x height (x GIF frames)
    max_images: int = 32  # images in one request
    top_k: int = 3  # classes in each prediction's "top", unless ?top_k= says otherwise
    request_timeout: float = 60.0  # seconds for a body to arrive, and for its answer
    decode_threads: int = 2  # images decoded at once (each can hold a full-size photo)

    @property
    def batch_sizes(self) -> list[int]:
        """The batch sizes the model is called with: a gathered batch is padded up to the
        next one. A runtime's first call at a new batch size is several times slower than
        the next (oneDNN builds its kernels per shape), so a server meeting every size from 1
        to 32 would pay that again and again under load; these few sizes are all met once at
        start-up instead."""
        sizes = {n for n in (1, 2, 4) if n < self.max_batch}
        sizes.update(range(8, self.max_batch, 8))
        return sorted(sizes | {self.max_batch})


def artifact_format(predictor: Predictor) -> str | None:
    """The exporter name labels.json lists for the predictor's artifact."""
    for name, files in predictor.labels.get("artifacts", {}).items():
        if files and files[0] == predictor.path.name:
            return name
    return None


def metadata(predictor: Predictor, settings: ServeSettings) -> dict[str, Any]:
    from clf import __version__

    labels = predictor.labels
    return {
        "class_names": predictor.class_names,
        "num_classes": len(predictor.class_names),
        "backbone": labels.get("backbone"),
        "input_size": list(predictor.input_size),
        "input": labels.get("input"),
        "resize": labels.get("resize", {"center_crop": 0.0, "steps": "the whole photo resized"}),
        "preprocessing": labels.get("preprocessing"),
        "artifact": {"format": artifact_format(predictor), "file": predictor.path.name,
                     "runtime": predictor.runtime, "quantization": predictor.quantization},
        "trained_with_clf_version": labels.get("clf_version"),
        "clf_version": __version__,
        "limits": asdict(settings),
    }


def padded(predict: Callable[[np.ndarray], Any], sizes: list[int]) -> Callable[[np.ndarray], np.ndarray]:
    """``predict`` called only at ``sizes``: a batch is padded (with copies of its last
    image) up to the next size and the padding's rows are dropped from the answer."""
    def call(images: np.ndarray) -> np.ndarray:
        n = len(images)
        size = next((s for s in sizes if s >= n), n)
        if size > n:
            images = np.concatenate([images, np.repeat(images[-1:], size - n, axis=0)])
        return np.asarray(predict(images))[:n]

    return call


def warm_up(predictor: Predictor, settings: ServeSettings) -> None:
    """Trace the decoder and call the model at every batch size it will be called with,
    before the first request would pay for it."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 80, 40)).save(buf, format="PNG")
    image = predictor.decode(buf.getvalue())
    for n in settings.batch_sizes:
        predictor.predict_batch(np.repeat(image[None], n, axis=0))


def _top_k(request: Request, settings: ServeSettings, classes: int) -> int:
    raw = request.query_params.get("top_k")
    if raw is None:
        return min(settings.top_k, classes)
    if not raw.isdigit() or int(raw) < 1:
        raise Problem(400, f"top_k={raw!r} is not a whole number >= 1; pass top_k=3, say.")
    return min(int(raw), classes)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def _busy(retry_after: int, why: str) -> Problem:
    return Problem(503, f"The server is busy: {why}. Retry after {retry_after} s.", {"Retry-After": str(retry_after)})


def _predictions(uploads: list[Upload], probs: np.ndarray, class_names: list[str], k: int) -> list[dict[str, Any]]:
    """The response's row per upload: its top class and ``k`` best, and every probability."""
    rows = []
    for upload, p in zip(uploads, probs):
        pred = Prediction(upload.name, [float(v) for v in p])
        top = [{"class": c, "probability": q} for c, q in pred.top(class_names, k)]
        rows.append({"name": upload.name, "class": top[0]["class"], "probability": top[0]["probability"],
                     "top": top, "probabilities": pred.probabilities})
    return rows


def _constant(response: Callable[[Any], Response], content: Any) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that answers every request with the same ``content`` (made at start)."""
    async def endpoint(request: Request) -> Response:
        return response(content)
    return endpoint


def _lifespan(batcher: MicroBatcher, decoders: ThreadPoolExecutor) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """Start the batcher with the server; stop it, then the decoding threads, at shutdown."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:  # uvicorn calls this after in-flight requests have been answered
            await batcher.stop()
            decoders.shutdown(wait=True)
    return lifespan


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)  # registered for Problem only
    return _error(exc.status, exc.message, exc.headers)


async def _on_http(request: Request, exc: Exception) -> Response:
    from starlette.exceptions import HTTPException

    assert isinstance(exc, HTTPException)  # registered for HTTPException only
    text = {404: f"No such page {request.url.path!r}; see /docs for the API.",
            405: f"{request.method} is not allowed on {request.url.path!r}; see /docs."}
    return _error(exc.status_code, text.get(exc.status_code, str(exc.detail)), exc.headers)


async def _on_crash(request: Request, exc: Exception) -> Response:
    return _error(500, f"Internal error: {type(exc).__name__}: {str(exc)[:300]}. See the server log.")


def create_app(predictor: Predictor, settings: ServeSettings | None = None) -> Starlette:
    """A Starlette app serving ``predictor`` (opened by ``clf.load_predictor``, warmed up)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    from clf.serve.openapi import docs_page, openapi_spec

    settings = settings or ServeSettings()
    batcher = MicroBatcher(padded(predictor.predict_batch, settings.batch_sizes), max_batch=settings.max_batch,
                           window_ms=settings.batch_window_ms, max_queue=settings.max_queue)
    decoders = ThreadPoolExecutor(max_workers=settings.decode_threads, thread_name_prefix="clf-decode")
    info = metadata(predictor, settings)
    spec = openapi_spec(info)
    page = resources.files("clf.serve").joinpath("index.html").read_text(encoding="utf-8")
    state = {"in_progress": 0}

    def decode(upload: Upload) -> np.ndarray:
        check_image(upload, settings.max_pixels)
        try:
            return predictor.decode(upload.data)
        except Exception as exc:  # tf.errors.InvalidArgumentError: not decodable after all
            raise why_undecodable(upload, str(exc)) from None

    async def predict(request: Request) -> Response:
        # Refuse early, before reading the body, when the queue is already full.
        if state["in_progress"] >= settings.max_queue:
            raise _busy(batcher.retry_after(), f"{state['in_progress']} requests are in progress "
                                               f"(limit {settings.max_queue}, --max-queue)")
        try:
            batcher.check_room(1)
        except QueueFull as exc:
            raise _busy(exc.retry_after, f"{exc} (--max-queue)") from None
        state["in_progress"] += 1
        try:
            k = _top_k(request, settings, len(predictor.class_names))
            with batcher.incoming():
                body = await read_body(request, settings.max_upload_bytes, settings.request_timeout)
                uploads = await parse_uploads(request, body, settings.max_images)
                loop = asyncio.get_running_loop()
                images = await asyncio.gather(*(loop.run_in_executor(decoders, decode, u) for u in uploads))
            try:
                batch = images[0][None] if len(images) == 1 else np.stack(images)
                probs = await asyncio.wait_for(batcher.predict(batch), settings.request_timeout)
            except QueueFull as exc:
                raise _busy(exc.retry_after, f"{exc} (--max-queue)") from None
            except TimeoutError:
                raise Problem(504, f"No prediction within {settings.request_timeout:g} s; the model is "
                                   f"overloaded or stuck. Retry later.") from None
        finally:
            state["in_progress"] -= 1
        return JSONResponse({"class_names": predictor.class_names,
                             "predictions": _predictions(uploads, probs, predictor.class_names, k)})

    async def health(request: Request) -> Response:
        s = batcher.stats
        return JSONResponse({"status": "ok", "waiting_images": batcher.waiting,
                             "requests_in_progress": state["in_progress"], "batches": s.batches,
                             "images": s.images, "largest_batch": s.largest, "recent_batches": s.sizes})

    routes = [
        Route("/", _constant(HTMLResponse, page), methods=["GET"]),
        Route("/predict", predict, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/metadata", _constant(JSONResponse, info), methods=["GET"]),
        Route("/openapi.json", _constant(JSONResponse, spec), methods=["GET"]),
        Route("/docs", _constant(HTMLResponse, docs_page(spec)), methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=_lifespan(batcher, decoders),
                    exception_handlers={Problem: _on_problem, HTTPException: _on_http, Exception: _on_crash})
    app.state.batcher = batcher
    return app
