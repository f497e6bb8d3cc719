"""The ASGI app behind ``clf serve``: routes, limits and JSON errors around a predictor.
Prediction is exactly ``clf predict``'s; only the batching differs (``MicroBatcher``)."""

from __future__ import annotations

import asyncio
import contextlib
import io
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Coroutine, Mapping, TypeVar

import numpy as np

from clf.artifacts.predict import to_predictions, unknown_rule
from clf.serve.batcher import MicroBatcher, QueueFull
from clf.serve.uploads import (Problem, Upload, check_images, discard_body, drain_limit, parse_uploads,
                               read_body, why_undecodable)
from clf import __version__
from clf.serve.openapi import docs_page, openapi_spec

T = TypeVar("T")
# Host names answered by default (--allowed-hosts): a rebinding page still sends its own name.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
# What a 503 during shutdown tells clients to wait before trying again (a restarted server).
RESTART_RETRY_S = 10

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
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
    max_request_pixels: int = 200_000_000  # all of one request's images together
    max_images: int = 32  # images in one request
    top_k: int = 3  # classes in each prediction's "top", unless ?top_k= says otherwise
    request_timeout: float = 60.0  # seconds for a body to arrive, and for its answer (decoding included)
    decode_threads: int = 2  # images decoded at once (each can hold a full-size photo)
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS  # Host header names answered ("*": any)

    @property
    def batch_sizes(self) -> list[int]:
        """The batch sizes the model is called with (a batch is padded up to the next): a first
        call per shape is slow (oneDNN builds kernels per shape), so a few sizes are warmed at start."""
        sizes = {n for n in (1, 2, 4, *range(8, self.max_batch, 8)) if n < self.max_batch}
        return sorted(sizes | {self.max_batch})


def metadata(predictor: Predictor, settings: ServeSettings) -> dict[str, Any]:
    labels = predictor.labels
    exporter = next((name for name, files in labels.get("artifacts", {}).items()
                     if files and files[0] == predictor.path.name), None)  # the one that wrote it
    return {
        "class_names": predictor.class_names,
        "num_classes": len(predictor.class_names),
        "backbone": labels.get("backbone"),
        "input_size": list(predictor.input_size),
        "input": labels.get("input"),
        "resize": labels.get("resize", {"center_crop": 0.0, "steps": "the whole photo resized"}),
        "preprocessing": labels.get("preprocessing"),
        "artifact": {"format": exporter, "file": predictor.path.name,
                     "runtime": predictor.runtime, "quantization": predictor.quantization},
        "unknown": _unknown_info(predictor),
        "trained_with_clf_version": labels.get("clf_version"),
        "clf_version": __version__,
        "limits": asdict(settings),
    }


def _unknown_info(predictor: Predictor) -> dict[str, Any] | None:
    """How the server decides "unknown": labels.json's rule (threshold, score kind) and whether it is
    applied (--unknown off: not); None for a model without a known score."""
    record = predictor.labels.get("unknown")
    if not record:
        return None
    shown = ("output", "threshold", "score", "rule", "accept_known", "validation_accepted")
    return {**{key: record[key] for key in shown if key in record}, "applied": unknown_rule(predictor) is not None}


def padded(predict: Callable[[np.ndarray], Any], sizes: list[int]) -> Callable[[np.ndarray], np.ndarray]:
    """``predict`` called only at ``sizes``: padded with copies of the last image, padding rows dropped."""
    def call(images: np.ndarray) -> np.ndarray:
        n = len(images)
        size = next((s for s in sizes if s >= n), n)
        if size > n:
            images = np.concatenate([images, np.repeat(images[-1:], size - n, axis=0)])
        return np.asarray(predict(images))[:n]

    return call


def warm_up(predictor: Predictor, settings: ServeSettings) -> None:
    """Trace the decoder and call the model at every batch size before the first request."""
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
    # str.isdigit() accepts '²', and int() refuses over 4300 digits: few ASCII digits only.
    # Above the number of classes is capped, as it always was (clients may ask for "all").
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and int(raw) >= 1):
        shown = raw if len(raw) <= 20 else raw[:20] + "..."
        raise Problem(400, f"top_k={shown!r} is not a whole number of at least 1 (at most {classes} classes are "
                           f"shown); pass top_k={min(3, classes)}, say.")
    return min(int(raw), classes)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def _busy(retry_after: int, why: str) -> Problem:
    return Problem(503, f"The server is busy: {why}. Retry after {retry_after} s.", {"Retry-After": str(retry_after)})


def _predictions(uploads: list[Upload], outputs: np.ndarray, predictor: Predictor, k: int) -> list[dict[str, Any]]:
    """The response's row per upload: its top class and ``k`` best, every probability, and, when the
    model's known score is applied, the score and whether the photo is unknown (``to_predictions``)."""
    rows = []
    for upload, pred in zip(uploads, to_predictions(predictor, [u.name for u in uploads], outputs)):
        top = [{"class": c, "probability": q} for c, q in pred.top(k)]
        row = {"name": upload.name, "class": top[0]["class"], "probability": top[0]["probability"],
               "top": top, "probabilities": pred.probabilities}
        if pred.known_score is not None:
            row.update(known_score=pred.known_score, unknown=pred.unknown)
        if pred.labels is not None:  # multi-label: the classes over their thresholds, with their scores
            scores = dict(zip(pred.class_names, pred.probabilities))
            row["labels"] = [{"class": c, "score": scores[c]} for c in pred.labels]
        rows.append(row)
    return rows


class Closing:
    """Shutdown as the app sees it: after ``begin_threadsafe()`` (SIGTERM or Ctrl-C) new requests
    get a 503 and those in flight ``grace`` seconds, then a 503: every client gets a JSON answer."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.began = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.expired = asyncio.Event()  # binds to the loop that first waits on it

    def begin(self) -> None:
        """In the event loop: refuse new requests, and in-flight ones after ``grace``."""
        if not self.began:
            self.began = True
            asyncio.get_running_loop().call_later(self.grace, self.expired.set)

    def begin_threadsafe(self) -> None:
        """``begin`` from a signal handler or another thread."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.begin)

    def refusal(self, why: str) -> Problem:
        return Problem(503, f"The server is shutting down: {why}. Retry after {RESTART_RETRY_S} s, "
                            f"once it (or its replacement) is back.", {"Retry-After": str(RESTART_RETRY_S)})

    async def race(self, work: Coroutine[Any, Any, T]) -> T:
        """``work``'s result, or a 503 ``Problem`` if the grace expires first."""
        task = asyncio.ensure_future(work)
        expiry = asyncio.ensure_future(self.expired.wait())
        try:
            await asyncio.wait({task, expiry}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # this request itself cancelled: nothing is left running
            task.cancel()
            raise
        finally:
            expiry.cancel()
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.wait({task})  # let it unwind (decoding abandoned, counters restored)
        raise self.refusal(f"this request did not finish within {self.grace:g} s of it")


def _lifespan(batcher: MicroBatcher, decoders: ThreadPoolExecutor, closing: Closing) -> Callable[[Any], Any]:
    """Start the batcher with the server; stop it, then the decoding threads, at shutdown."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        closing.loop = asyncio.get_running_loop()
        await batcher.start()
        try:
            yield
        finally:  # uvicorn calls this after in-flight requests have been answered
            await batcher.stop()
            # A decode that a timed-out request left running ends; queued ones are dropped.
            decoders.shutdown(wait=True, cancel_futures=True)
    return lifespan


def _host_name(value: str) -> str:
    """The name in a Host header, without port, brackets or trailing dot, lower case."""
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8000
        value = value[1:value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:
        value = value.split(":")[0]
    return value.rstrip(".")


class HostCheck:
    """Refuses (400, JSON) a Host header that is not an allowed name: a DNS-rebinding page
    reaches 127.0.0.1 under its own name, which its requests still carry as Host."""

    def __init__(self, app: Callable[..., Awaitable[None]], allowed: tuple[str, ...]) -> None:
        self.app = app
        self.any = "*" in allowed
        self.allowed = {_host_name(name) for name in allowed}
        self.shown = ", ".join(allowed)

    async def __call__(self, scope: dict, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] in ("http", "websocket") and not self.any:
            raw = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if _host_name(raw) not in self.allowed:
                shown = raw[:100] or "(none)"
                response = _error(400, f"Host {shown!r} is not a name this server answers to (allowed: "
                                       f"{self.shown}); open it by one of those, or start it with "
                                       f"--allowed-hosts NAME to add a name.", {"Connection": "close"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


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


async def _within(work: Awaitable[T], deadline: float, timeout: float, doing: str) -> T:
    """``work``'s result, or a 504 ``Problem`` past ``deadline`` (event loop time)."""
    try:
        return await asyncio.wait_for(work, deadline - asyncio.get_running_loop().time())
    except TimeoutError:
        raise Problem(504, f"No prediction within {timeout:g} s (--request-timeout; it ran out while "
                           f"{doing}); the server is overloaded, or the images take long to decode. "
                           f"Retry later, or send fewer or smaller images per request.") from None


async def _decode_all(predictor: Any, decoders: ThreadPoolExecutor, settings: ServeSettings,
                      uploads: list[Upload], deadline: float) -> list[np.ndarray]:
    """The uploads decoded (``predictor.decode``) on ``decoders`` by ``deadline``, all checked first."""
    loop = asyncio.get_running_loop()
    timeout = settings.request_timeout

    def decode(upload: Upload) -> np.ndarray:
        try:
            return predictor.decode(upload.data)
        except Exception as exc:  # TensorFlow's InvalidArgumentError or pixels.Undecodable: not decodable
            raise why_undecodable(upload, str(exc)) from None

    await _within(loop.run_in_executor(decoders, check_images, uploads, settings.max_pixels,
                                       settings.max_request_pixels), deadline, timeout, "reading image headers")
    # One image at a time, so requests take turns and a big one cannot hold everyone up.
    images = []
    for i, upload in enumerate(uploads):
        images.append(await _within(loop.run_in_executor(decoders, decode, upload), deadline, timeout,
                                    f"decoding image {i + 1} of {len(uploads)}"))
    return images


def create_app(predictor: Predictor, settings: ServeSettings | None = None) -> Starlette:
    """A Starlette app serving ``predictor`` (opened by ``clf.load_predictor``, warmed up)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    settings = settings or ServeSettings()
    batcher = MicroBatcher(padded(predictor.predict_batch, settings.batch_sizes), max_batch=settings.max_batch,
                           window_ms=settings.batch_window_ms, max_queue=settings.max_queue)
    decoders = ThreadPoolExecutor(max_workers=settings.decode_threads, thread_name_prefix="clf-decode")
    info = metadata(predictor, settings)
    spec = openapi_spec(info)
    page = resources.files("clf.serve").joinpath("index.html").read_text(encoding="utf-8")
    state = {"in_progress": 0}
    closing = Closing(settings.request_timeout)
    timeout = settings.request_timeout

    async def answer(request: Request, k: int) -> JSONResponse:
        loop = asyncio.get_running_loop()
        with batcher.incoming():
            body = await read_body(request, settings.max_upload_bytes, timeout)
            uploads = await parse_uploads(request, body, settings.max_images)
            del body
            deadline = loop.time() + timeout  # for decoding and the model, as for the body
            images = await _decode_all(predictor, decoders, settings, uploads, deadline)
        batch = images[0][None] if len(images) == 1 else np.stack(images)
        del images
        try:
            outputs = await _within(batcher.predict(batch), deadline, timeout, "waiting for the model")
        except QueueFull as exc:
            raise _busy(exc.retry_after, f"{exc} (--max-queue)") from None
        return JSONResponse({"class_names": predictor.class_names,
                             "predictions": _predictions(uploads, outputs, predictor, k)})

    async def predict(request: Request) -> JSONResponse:
        try:  # refusals before the body is read: read and drop it first (discard_body)
            if closing.began:
                raise closing.refusal("it takes no new requests")
            k = _top_k(request, settings, len(predictor.class_names))
            if state["in_progress"] >= settings.max_queue:
                raise _busy(batcher.retry_after(), f"{state['in_progress']} requests are in progress "
                                                   f"(limit {settings.max_queue}, --max-queue)")
            try:
                batcher.check_room(1)
            except QueueFull as exc:
                raise _busy(exc.retry_after, f"{exc} (--max-queue)") from None
        except Problem as exc:
            exc.headers.update(await discard_body(request, drain_limit(settings.max_upload_bytes), timeout))
            raise
        state["in_progress"] += 1
        try:
            return await closing.race(answer(request, k))
        finally:
            state["in_progress"] -= 1

    async def health(request: Request) -> Response:
        s = batcher.stats
        return JSONResponse({"status": "ok", "waiting_images": batcher.waiting,
                             "requests_in_progress": state["in_progress"], "batches": s.batches,
                             "images": s.images, "largest_batch": s.largest, "recent_batches": s.sizes})

    routes = [
        # A Response is an ASGI app: these answer every request with the same bytes, made at start.
        Route("/", HTMLResponse(page), methods=["GET"]),
        Route("/predict", predict, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/metadata", JSONResponse(info), methods=["GET"]),
        Route("/openapi.json", JSONResponse(spec), methods=["GET"]),
        Route("/docs", HTMLResponse(docs_page(spec)), methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=_lifespan(batcher, decoders, closing),
                    middleware=[Middleware(HostCheck, allowed=tuple(settings.allowed_hosts))],
                    exception_handlers={Problem: _on_problem, HTTPException: _on_http, Exception: _on_crash})
    app.state.batcher = batcher
    # For the server running the app: call on SIGTERM (any thread) to answer 503 from then on.
    app.state.begin_shutdown = closing.begin_threadsafe
    return app
