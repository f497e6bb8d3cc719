"""``clf serve``: a trained model behind an HTTP API and a drop-a-photo page (uvicorn)."""

from __future__ import annotations

import ipaddress
from typing import List, Optional

import typer
from clf.cli.app import PluginOpt, _host, app, cli_errors, err
from clf.cli.render import esc
from clf.errors import UsageError

FORMATS = ("auto", "h5", "keras", "savedmodel", "tflite", "onnx")
INSTALL_HINT = "Install the serve extra: pip install 'clf[serve]' (starlette, uvicorn, python-multipart)."


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
@cli_errors()
def serve(
    model: str = typer.Argument(..., help="A clf run folder, or an artifact in one (model.keras, saved_model, model.tflite...)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; 0.0.0.0 opens the server to the network (there is no authentication)."),
    port: int = typer.Option(8000, min=0, max=65535, help="TCP port."),
    fmt: str = typer.Option("auto", "--format", help=f"Which artifact of a run folder: {', '.join(FORMATS)} (or another exporter's name); auto: the first labels.json lists."),
    max_batch: int = typer.Option(32, min=1, help="Most images in one model call (1: no micro-batching)."),
    batch_window_ms: float = typer.Option(5.0, min=0, help="How long a request waits for others to share its model call."),
    max_queue: int = typer.Option(256, min=1, help="Images waiting for the model (and requests in progress) before answering 503 with Retry-After."),
    max_upload_mb: float = typer.Option(32.0, min=0.001, help="Largest request body, in MiB (413 above)."),
    max_pixels: int = typer.Option(50_000_000, min=1, help="Most pixels in one image, read from its header before decoding (413 above)."),
    max_images: int = typer.Option(32, min=1, help="Most images in one request."),
    top_k: int = typer.Option(3, min=1, help="Classes in each prediction's 'top' unless the request passes ?top_k=."),
    request_timeout: float = typer.Option(60.0, min=0.1, help="Seconds for a request's body to arrive, and for its prediction."),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request (uvicorn's access log)."),
    runtime: str = typer.Option("auto", help="What runs the frozen backbone of a Keras model (h5, keras): auto (the runtime its training run chose and checked, when cached), tensorflow, tflite or onnx."),
    plugin: Optional[List[str]] = PluginOpt,
) -> None:
    """Serve a trained model: POST /predict, GET /metadata, /health, /docs, and a page at /."""
    try:
        import uvicorn
        import starlette  # noqa: F401
        import python_multipart  # noqa: F401  (for uploads)
    except ImportError as exc:
        raise UsageError(f"clf serve needs {exc.name!r}, which is not installed. {INSTALL_HINT}") from None
    from clf.artifacts.predict import load_predictor
    from clf.serve import ServeSettings, create_app, warm_up

    settings = ServeSettings(max_batch=max_batch, batch_window_ms=batch_window_ms, max_queue=max_queue,
                             max_upload_bytes=int(max_upload_mb * 2**20), max_pixels=max_pixels,
                             max_images=max_images, top_k=top_k, request_timeout=request_timeout)
    predictor = load_predictor(model, _host(plugin), fmt=fmt, runtime=runtime)
    warm_up(predictor, settings)
    for note in predictor.notes:
        err.print(f"[yellow]note:[/] {esc(note)}", highlight=False, soft_wrap=True)
    if not _is_loopback(host):
        err.print(f"[yellow]warning:[/] binding {host}: anyone who can reach this machine can use the "
                  f"model (no authentication). Use the default 127.0.0.1 to keep it local.", highlight=False)
    shown = f"[{host}]" if ":" in host else host
    err.print(f"serving {predictor.path.name} ({predictor.runtime}, {len(predictor.class_names)} classes) "
              f"on http://{shown}:{port}/  (API docs: /docs; Ctrl-C stops)", highlight=False, soft_wrap=True)
    config = uvicorn.Config(create_app(predictor, settings), host=host, port=port, log_level="warning",
                            access_log=access_log, lifespan="on",
                            # SIGTERM/Ctrl-C: stop accepting, answer what is in flight, then exit.
                            timeout_graceful_shutdown=int(request_timeout) + 5)
    server = uvicorn.Server(config)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once in-flight requests are answered
        err.print("stopped", highlight=False)
        raise typer.Exit(130)
    if not server.started:  # the port was taken, say; uvicorn has logged why
        raise typer.Exit(1)
