"""A static web app: ``web/``, a folder that classifies dropped or picked photos in the browser
with no server code (docs/deploy.md). It holds ``index.html``, ``model.onnx`` (the photo model
through ``clf.to_onnx``: the page passes the decoded photo, and the model crops and resizes it
as clf does) and ONNX Runtime Web's CPU (WebAssembly) files, copied at export time from an
installed ``onnxruntime-web`` npm package: ``$CLF_ONNXRUNTIME_WEB``, else
``./node_modules/onnxruntime-web``. Nothing is fetched from outside the folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from clf import hookimpl, atomic_path, ExportError, ImageSize, ModelError, OnnxRunner, Predictor, \
    RuntimeUnavailable, stamp_onnx_metadata, to_onnx

ENV_PACKAGE = "CLF_ONNXRUNTIME_WEB"
FOLDER = "web"
# The CPU (WebAssembly) build only: the script, the loader it imports and the SIMD binary
# (one binary serves one thread too). onnxruntime-web 1.20.1 and 1.31.1 both ship these names.
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
PAGE = Path(__file__).with_name("web_page.html")
CONFIG_MARK = "/*CLF_CONFIG*/null"
INSTALL = (f"npm install onnxruntime-web@1.20.1 (into the folder you run clf from, or anywhere with "
           f"{ENV_PACKAGE}=<that>/node_modules/onnxruntime-web)")
MIT_NOTICE = """onnxruntime-web {version} (https://github.com/microsoft/onnxruntime), files {files}

MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def runtime_package() -> Path | None:
    """The ``onnxruntime-web`` package folder holding ``dist/`` with ``RUNTIME_FILES``; None if none."""
    named = os.environ.get(ENV_PACKAGE)
    for candidate in ([Path(named)] if named else [Path.cwd() / "node_modules" / "onnxruntime-web"]):
        for folder in (candidate, candidate.parent):  # the package, or its dist/ named directly
            if all((folder / "dist" / f).is_file() for f in RUNTIME_FILES):
                return folder
    return None


def missing_runtime() -> str | None:
    """None when ONNX Runtime Web's files are found, else what is missing and how to get it."""
    if runtime_package() is not None:
        return None
    named = os.environ.get(ENV_PACKAGE)
    where = f"{ENV_PACKAGE}={named!r}" if named else f"./node_modules/onnxruntime-web (from {str(Path.cwd())!r})"
    return (f"the onnxruntime-web npm package was not found at {where}; expected its dist/ folder with "
            f"{', '.join(RUNTIME_FILES)}. Install it: {INSTALL}.")


def page(metadata: dict[str, Any], runtime_version: str) -> str:
    """``index.html`` with the model's classes, input and known-score threshold inside."""
    unknown = metadata.get("unknown")
    config = {"class_names": list(metadata["class_names"]), "input_size": list(metadata["input_size"]),
              "known_threshold": float(unknown["threshold"]) if unknown else None,
              "backbone": metadata.get("backbone"), "onnxruntime_web": runtime_version}
    # '</' never appears inside the script element, whatever a class is called.
    text = json.dumps(config, sort_keys=True).replace("</", "<\\/")
    return PAGE.read_text(encoding="utf-8").replace(CONFIG_MARK, text)


def export_web(model: Any, directory: Path, metadata: dict[str, Any]) -> list[Path]:
    """The static web app folder: index.html, model.onnx and ONNX Runtime Web's CPU files."""
    package = runtime_package()
    if package is None:
        raise ExportError(f"The web exporter cannot run: {missing_runtime()}")
    size = ImageSize(metadata["input_size"], float(metadata.get("resize", {}).get("center_crop", 0.0)))
    try:
        from clf import photo_model  # here: it imports Keras, and listings must not

        content = to_onnx(photo_model(model, size))  # the page passes whole photos (any size)
    except RuntimeUnavailable as exc:
        raise ExportError(f"The web exporter cannot run: {exc}. Install the ONNX extra: "
                          f"pip install 'clf[onnx]'.") from None
    content = stamp_onnx_metadata(content, "clf_labels", json.dumps(metadata, sort_keys=True))
    version = str(json.loads((package / "package.json").read_text(encoding="utf-8")).get("version", "?")) \
        if (package / "package.json").is_file() else "?"
    folder = Path(directory) / FOLDER
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        (tmp / "model.onnx").write_bytes(content)
        (tmp / "index.html").write_text(page(metadata, version), encoding="utf-8")
        for name in RUNTIME_FILES:
            shutil.copyfile(package / "dist" / name, tmp / name)
        (tmp / "THIRD_PARTY_NOTICES.txt").write_text(
            MIT_NOTICE.format(version=version, files=", ".join(RUNTIME_FILES)), encoding="utf-8")
    return [folder]


class WebModelPredictor(Predictor):
    """The web app's ``model.onnx`` in onnxruntime (the browser runs the same graph in WebAssembly;
    tests/test_web_export.py checks the page itself in headless Chromium)."""

    runtime = "onnxruntime"

    def __init__(self, path: Path, labels: dict[str, Any]) -> None:
        super().__init__(path, labels)
        model = Path(path) / "model.onnx" if Path(path).is_dir() else Path(path)
        try:
            self._runner = OnnxRunner(model)
        except RuntimeUnavailable as exc:
            raise ModelError(f"Checking {str(path)!r} needs onnxruntime ({exc}). "
                             f"Install the ONNX extra: pip install 'clf[onnx]'.") from None
        except Exception as exc:
            raise ModelError(f"Could not open {str(model)!r}: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:300] if str(exc) else ''}. Expected the web app "
                             f"folder clf exported.") from None

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        return self._runner.run(images)


@hookimpl
def register_exporters(register: Callable[..., None]) -> None:
    register("web", export_web, load=WebModelPredictor, requires=("tf2onnx", "onnx", "onnxruntime"),
             install="pip install 'clf[onnx]'", check=missing_runtime,
             description="a static web app (ONNX Runtime Web, no server code); needs the 'onnx' extra "
                         "and the onnxruntime-web npm package")
