"""Benchmark: clf's model in the clients people deploy to, against ``clf predict`` (the run's
Keras model, clf's decoding) on real photos.

For each dataset (default: hymenoptera and flowers5 from ../shared), one default run
(mobilenet_v2_035, shared ImageNet weights, 224 px) exported as ``mediapipe`` and ``web``, then on
up to ``--limit`` validation photos each:

  MediaPipe Tasks' ImageClassifier (Python), the exported ``model_mediapipe.tflite``:
    (a) clf's image: the photo decoded, centre-cropped and resized by clf, rounded to 8 bits
        (MediaPipe takes 8-bit images): top-1 agreement and max |diff| against clf predict, for
        the class probabilities and the known score apart; and against the Keras model on the
        same 8-bit image (the model inside MediaPipe; should be float rounding only);
    (b) the app's path: the whole photo, clf's crop as region_of_interest, MediaPipe's own resize
        (bilinear, not antialiased): the same figures.
    Targets: top-1 100%, max |diff| <= 1e-3 (or the figure and its reason).
  The web app (``web/``) in headless Chromium from a local static server: each photo passed as
    its file bytes to the page's classify (the browser decodes it): top-1 agreement and max |diff|
    against clf predict; the folder's size; from navigation start to the model ready and to the
    first prediction. Targets: top-1 >= 99%, folder <= 15 MB, first prediction <= 3 s.

Needs the mediapipe extra, playwright + chromium, and onnxruntime-web ($CLF_ONNXRUNTIME_WEB or
./node_modules/onnxruntime-web; see docs/deploy.md).

Usage (from the repository root):
    python benchmarks/deploy_clients.py [--data DIR ...] [--limit 100] [--output DIR]
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_0.35_224_imagenet_notop.weights.h5"
DEFAULT_DATA = [SHARED / "datasets" / "hymenoptera", SHARED / "datasets" / "flowers5"]


def validation_photos(data: Path, limit: int) -> list[Path]:
    """Up to ``limit`` photos of the dataset's val/ folder, spread over its classes."""
    import clf

    files = clf.collect_images(data / "val")
    picked = np.linspace(0, len(files) - 1, min(limit, len(files))).round().astype(int)
    return [files[i] for i in sorted(set(picked))]


def figures(reference: np.ndarray, got: np.ndarray, k: int) -> dict:
    """Top-1 agreement and max |diff| of the class columns, and max |diff| of the known score."""
    out = {"top1_agreement": float(np.mean(reference[:, :k].argmax(1) == got[:, :k].argmax(1))),
           "max_abs_diff_probabilities": float(np.abs(reference[:, :k] - got[:, :k]).max())}
    if reference.shape[1] > k:
        out["max_abs_diff_known_score"] = float(np.abs(reference[:, k] - got[:, k]).max())
    return out


def mediapipe_check(run_dir: Path, files: list[Path], reference: np.ndarray, labels: dict) -> dict:
    import mediapipe as mp
    from mediapipe.tasks.python.components.containers.rect import RectF
    from mediapipe.tasks.python.vision.core.image_processing_options import ImageProcessingOptions

    import clf
    from clf.plugins import mediapipe_exporter as mpx

    k, known = len(labels["class_names"]), bool(labels.get("unknown"))
    size = clf.ImageSize(labels["input_size"], float(labels["resize"]["center_crop"]))
    classifier = mpx.open_classifier(run_dir / mpx.FILE_NAME)
    fitted = clf.Decoder(size).batch(files)
    eight_bit = np.round(fitted).astype(np.uint8)
    clf_image = np.stack([mpx.result_outputs(mpx.classify(classifier, im), k, known) for im in eight_bit])
    keras = clf.load_predictor(run_dir, fmt="h5").predict_batch(eight_bit.astype(np.float32))
    app = []
    for f in files:
        pixels = _pillow(f)  # as an app gets it: the decoded photo, 8-bit
        left, top, right, bottom = mpx.crop_box(pixels.shape[0], pixels.shape[1], labels["input_size"],
                                                size.center_crop)
        roi = ImageProcessingOptions(region_of_interest=RectF(left=left, top=top, right=right, bottom=bottom))
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(pixels))
        with clf.quiet_logs():
            app.append(mpx.result_outputs(classifier.classify(image, roi), k, known))
    classifier.close()
    return {"photos": len(files),
            "clf_image_vs_clf_predict": figures(reference, clf_image, k),
            "clf_image_vs_keras_same_8_bit_image": figures(keras, clf_image, k),
            "app_path_vs_clf_predict": figures(reference, np.stack(app), k)}


def _pillow(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), np.uint8)


def web_check(run_dir: Path, files: list[Path], reference: np.ndarray, labels: dict) -> dict:
    from playwright.sync_api import sync_playwright

    folder = run_dir / "web"

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    script = ("async b64 => { const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));"
              " return await clf.classify(new Blob([bytes])); }")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
            page = browser.new_page()
            outside: list[str] = []
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(url) else None)
            page.goto(url)
            # The first photo goes in as soon as the page has loaded, as a user dropping one at once.
            got = [page.evaluate(script, base64.b64encode(files[0].read_bytes()).decode())]
            first_ms = page.evaluate("window.clfFirstPredictionMs")
            ready_ms = page.evaluate("window.clfReadyMs")
            got += [page.evaluate(script, base64.b64encode(f.read_bytes()).decode()) for f in files[1:]]
            browser.close()
    finally:
        server.shutdown()
    size = sum(f.stat().st_size for f in folder.iterdir())
    return {"photos": len(files), **figures(reference, np.array(got), len(labels["class_names"])),
            "folder_bytes": size, "folder_mb": round(size / 1e6, 2),
            "files": {f.name: f.stat().st_size for f in sorted(folder.iterdir())},
            "model_ready_s": round(ready_ms / 1000, 3), "first_prediction_s": round(first_ms / 1000, 3), "requests_outside_folder": outside}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=100, help="validation photos per dataset")
    parser.add_argument("--output", type=Path, default=None, help="where the runs go (default: a temp folder)")
    args = parser.parse_args()

    import clf

    out = args.output or Path(tempfile.mkdtemp(prefix="clf-deploy-"))
    report: dict = {"datasets": {}}
    totals: dict[str, list] = {"mediapipe": [], "mediapipe_app": [], "web": []}
    for data in args.data:
        run_dir = out / data.name
        if not (run_dir / "labels.json").is_file():
            clf.run(backbone="mobilenet_v2_035", weights=str(WEIGHTS), data=str(data), output=str(run_dir),
                    export=["h5", "mediapipe", "web"])
        labels = json.loads((run_dir / "labels.json").read_text())
        files = validation_photos(data, args.limit)
        predictions = clf.predict_files(clf.load_predictor(run_dir, fmt="h5"), files)
        reference = np.array([p.probabilities + ([p.known_score] if p.known_score is not None else [])
                              for p in predictions])
        mp_result = mediapipe_check(run_dir, files, reference, labels)
        web_result = web_check(run_dir, files, reference, labels)
        report["datasets"][data.name] = {"mediapipe": mp_result, "web": web_result}
        print(json.dumps({data.name: report["datasets"][data.name]}, indent=2), flush=True)
        n = len(files)
        totals["mediapipe"].append((n, mp_result["clf_image_vs_clf_predict"]))
        totals["mediapipe_app"].append((n, mp_result["app_path_vs_clf_predict"]))
        totals["web"].append((n, web_result))
    print("\nsummary (targets: MediaPipe top-1 100% and max |diff| <= 1e-3; web top-1 >= 99%, "
          "folder <= 15 MB, first prediction <= 3 s)")
    for name, rows in totals.items():
        n = sum(r[0] for r in rows)
        agreement = sum(r[0] * r[1]["top1_agreement"] for r in rows) / n
        diff = max(r[1]["max_abs_diff_probabilities"] for r in rows)
        known = max((r[1].get("max_abs_diff_known_score", 0.0) for r in rows), default=0.0)
        print(f"  {name}: {n} photos, top-1 agreement {agreement:.1%}, max |diff| probabilities {diff:.2e}, "
              f"known score {known:.2e}")
    web = [r[1] for r in totals["web"]]
    print(f"  web folder {max(w['folder_mb'] for w in web)} MB, first prediction "
          f"{max(w['first_prediction_s'] for w in web)} s (slowest dataset), requests outside the folder: "
          f"{sum(len(w['requests_outside_folder']) for w in web)}")


if __name__ == "__main__":
    main()
