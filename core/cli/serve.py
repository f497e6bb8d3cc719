"""``clf serve``: a trained model behind an HTTP API and a drop-a-photo page (uvicorn)."""

from __future__ import annotations

import ipaddress
import socket
from contextlib import suppress
from typing import Any, List, Optional

import typer
from clf.cli.app import PluginOpt, _host, _notes, app, cli_errors, err
from clf.cli.render import esc
from clf.errors import ClfError, UsageError

FORMATS = ("auto", "h5", "keras", "savedmodel", "tflite", "onnx")
INSTALL_HINT = "Install the serve extra: pip install 'clf[serve]' (starlette, uvicorn, python-multipart)."


def _is_loopback(host: str) -> bool:
    with suppress(ValueError):  # a name, not an address
        return ipaddress.ip_address(host).is_loopback
    return host == "localhost"


def _bind(host: str, port: int) -> socket.socket:
    """The server's socket, bound before loading or printing: a busy port is one line and exit 2."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: not over a live server
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        why = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"Cannot listen on {host} port {port}: {why}. Stop the program using it, or "
                         f"pass another --port (--port 0 picks a free one) or --host.") from None
    return sock


def _allowed_hosts(host: str, extra: Optional[str]) -> tuple[str, ...]:
    """Loopback names, the bound address (unless a wildcard) and ``--allowed-hosts``."""
    from clf.serve.app import LOOPBACK_HOSTS  # here: clf.serve loads numpy, too slow for --help

    names = list(LOOPBACK_HOSTS)
    if host not in ("", "0.0.0.0", "::"):  # a wildcard is no name to reach the server by
        names.append(host)
    names += [name.strip() for name in (extra or "").split(",") if name.strip()]
    return tuple(dict.fromkeys(names))


@app.command()
@cli_errors()
def serve(
    model: str = typer.Argument(..., help="A clf run folder, or an artifact in one (model.keras, saved_model, model.tflite...)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; 0.0.0.0 opens the server to the network (there is no authentication)."),
    port: int = typer.Option(8000, min=0, max=65535, help="TCP port."),
    fmt: str = typer.Option("auto", "--format", help=f"Which artifact of a run folder: {', '.join(FORMATS)} (or another exporter's name); auto: the fastest verified one that runs without TensorFlow (tflite, onnx), else the first labels.json lists."),
    max_batch: int = typer.Option(32, min=1, help="Most images in one model call (1: no micro-batching)."),
    batch_window_ms: float = typer.Option(5.0, min=0, help="How long a request waits for others to share its model call."),
    max_queue: int = typer.Option(256, min=1, help="Images waiting for the model (and requests in progress) before answering 503 with Retry-After."),
    max_upload_mb: float = typer.Option(32.0, min=0.001, help="Largest request body, in MiB (413 above)."),
    max_pixels: int = typer.Option(50_000_000, min=1, help="Most pixels in one image, read from its header before decoding (413 above)."),
    max_request_pixels: int = typer.Option(200_000_000, min=1, help="Most pixels in one request's images together, read from their headers before decoding (413 above)."),
    max_images: int = typer.Option(32, min=1, help="Most images in one request."),
    top_k: int = typer.Option(3, min=1, help="Classes in each prediction's 'top' unless the request passes ?top_k=."),
    request_timeout: float = typer.Option(60.0, min=0.1, help="Seconds for a request's body to arrive, and for its prediction (decoding included); at shutdown, what in-flight requests are given."),
    allowed_hosts: Optional[str] = typer.Option(None, "--allowed-hosts", help="Comma-separated names clients may reach the server by (the Host header), besides localhost, 127.0.0.1, ::1 and --host; '*': any. Others get 400 (against DNS rebinding)."),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request (uvicorn's access log)."),
    runtime: str = typer.Option("auto", help="What runs the frozen backbone of a Keras model (h5, keras): auto (the runtime its training run chose and checked, when cached), tensorflow, tflite or onnx; openvino: the run's .onnx or .tflite in OpenVINO."),
    unknown: str = typer.Option("auto", "--unknown", help="auto: each prediction carries the model's known_score and 'unknown' (below the threshold: none of the classes); off: ignore the score, answers as for a model without one."),
    plugin: Optional[List[str]] = PluginOpt,
) -> None:
    """Serve a trained model: POST /predict, GET /metadata, /health, /docs, and a page at /."""
    try:
        import uvicorn
        import starlette  # noqa: F401
        import python_multipart  # noqa: F401  (for uploads)
    except ImportError as exc:
        raise UsageError(f"clf serve needs {exc.name!r}, which is not installed. {INSTALL_HINT}") from None
    from clf.artifacts.predict import load_predictor, unknown_rule
    from clf.serve import ServeSettings, create_app, warm_up

    settings = ServeSettings(max_batch=max_batch, batch_window_ms=batch_window_ms, max_queue=max_queue,
                             max_upload_bytes=int(max_upload_mb * 2**20), max_pixels=max_pixels,
                             max_request_pixels=max_request_pixels, max_images=max_images, top_k=top_k,
                             request_timeout=request_timeout, allowed_hosts=_allowed_hosts(host, allowed_hosts))
    with _bind(host, port) as sock:
        port = sock.getsockname()[1]  # the one picked, for --port 0
        predictor = load_predictor(model, _host(plugin), fmt=fmt, runtime=runtime, unknown=unknown)
        warm_up(predictor, settings)
        _notes(predictor.notes)
        if not _is_loopback(host):
            err.print(f"[yellow]warning:[/] binding {esc(host)}: anyone who can reach this machine can use the "
                      f"model (no authentication). Use the default 127.0.0.1 to keep it local. Clients must "
                      f"name it by one of: {esc(', '.join(settings.allowed_hosts))} (--allowed-hosts adds "
                      f"names).", highlight=False, soft_wrap=True)
        shown = f"[{host}]" if ":" in host else host
        rule = unknown_rule(predictor)
        known = f"; unknown below known score {rule['threshold']}" if rule else ""
        err.print(f"serving {predictor.path.name} ({predictor.runtime}, {len(predictor.class_names)} "
                  f"classes{known}) on http://{shown}:{port}/  (API docs: /docs; Ctrl-C stops)",
                  highlight=False, soft_wrap=True)
        asgi = create_app(predictor, settings)
        # SIGTERM/Ctrl-C: stop accepting, answer in-flight requests (503 after request_timeout).
        config = uvicorn.Config(asgi, host=host, port=port, log_level="warning", access_log=access_log,
                                lifespan="on", timeout_graceful_shutdown=int(settings.request_timeout) + 5)

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                asgi.state.begin_shutdown()
                super().handle_exit(sig, frame)

        server = Server(config)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once in-flight requests are answered
            err.print("stopped", highlight=False)
            raise typer.Exit(130)
        except SystemExit as exc:  # uvicorn's startup failure (3): the app did not start
            raise ClfError(f"The server did not start (uvicorn exit {exc.code}); its log above says "
                           f"why.") from None
        if not server.started:
            raise ClfError("The server did not start; its log above says why.")


serve.metavars = {"fmt": "NAME", "unknown": "auto|off"}  # type: ignore[attr-defined]  # an artifact, not predict's table|csv|json
