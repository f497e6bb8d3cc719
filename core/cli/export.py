"""``clf export``: add verified artifacts (TFLite, ONNX, ...) to a finished run."""

from __future__ import annotations

from typing import List, Optional

import typer
from clf.cli.app import (LogFormatOpt, PluginOpt, QuietOpt, TrustOpt, _close, _host, _observer, app,
                         cli_errors, out)
from clf.cli.render import esc, print_deployment


@app.command("export")
@cli_errors()
def export_command(
    run_dir: str = typer.Argument(..., metavar="RUN_DIR", help="A finished clf run folder (one with labels.json and model.h5 or model.keras)."),
    export: str = typer.Option(..., "--export", "-e", help="Comma-separated exporters to add, e.g. tflite,onnx (see 'clf exporters')."),
    quantize: str = typer.Option("none", help="TFLite quantization: none, float16, dynamic or int8 (int8 calibrates on the run's training images)."),
    data: Optional[str] = typer.Option(None, "--data", help="The run's --data folder, when it has moved: the images the new artifacts are checked (and int8 calibrated) on."),
    model_input: str = typer.Option("photo", metavar="photo|fixed", help="What the new artifacts take: 'photo' (the decoded photo at any size; crop and resize inside) or 'fixed' (images at the input size)."),
    verify: bool = typer.Option(True, help="Reopen each new artifact in its own runtime and compare it with the run's Keras model."),
    trust_artifact: bool = TrustOpt,
    plugin: Optional[List[str]] = PluginOpt,
    log_format: str = LogFormatOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Add artifacts to a finished run: exported from its Keras model, verified on its
    held-out images, listed in labels.json and manifest.json. Existing artifacts are kept."""
    from clf.artifacts.reexport import export as add_exports

    observer = _observer(log_format, quiet)
    added = add_exports(run_dir, export, quantize=quantize, data=data, verify=verify, observer=observer,
                        host=_host(plugin), model_input=model_input, trust_artifact=trust_artifact)
    _close(observer)
    print_deployment(out, added.run_dir, log_format, quiet)
    files = ", ".join(f.name for files in added.artifacts.values() for f in files)
    out.print(f"[bold green]done[/] added {esc(files)} to {esc(added.run_dir)}", highlight=False,
              soft_wrap=True)
