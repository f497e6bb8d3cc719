"""examples/quickstart.ipynb runs, cell by cell, on a real Jupyter kernel (nbclient +
ipykernel), as a user running it from examples/ would; any cell that errors fails the test."""

import json
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def outputs(cell) -> str:
    """Everything a cell showed: streams, text and HTML reprs."""
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        data = out.get("data", {})
        parts += [data.get("text/plain", ""), data.get("text/html", "")]
    return "".join(parts)


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path):
    # From a folder like examples/ (its sample_data/ beside it), writing runs/ there.
    (tmp_path / "sample_data").symlink_to(EXAMPLES / "sample_data", target_is_directory=True)
    notebook = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "commit the notebook without outputs"
    t0 = time.perf_counter()
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    seconds = time.perf_counter() - t0
    shown = [outputs(cell) for cell in notebook.cells if cell.cell_type == "code"]
    # progress=True showed each phase: the solved head, then the verified export
    assert "linear head solved" in shown[1] and "h5 (model.h5): the file holds the in-memory model" in shown[1]
    assert "<table>" in shown[2] and "data:image/png;base64," in shown[2]  # the report, with its image
    assert shown[3].startswith("RunResult(") and "validation_accuracy=" in shown[3]
    assert [line.split(":")[0] for line in shown[4].splitlines()] == [
        "circle/circle_000.jpg", "square/square_000.jpg", "triangle/triangle_000.jpg"]
    assert "[('" in shown[5]  # Prediction.top(2), no class names passed
    assert "tflite (model.tflite, litert, quantization none)" in shown[6]  # LiteRT, never the deprecated tf.lite
    markers = ("WARNING:tensorflow", "WARNING:absl", "retracing", "oneDNN", "absl::InitializeLog", "XNNPACK",
               "legacy", "trackable_obj")
    noise = [line for text in shown for line in text.splitlines() if any(m in line for m in markers)]
    assert noise == []  # no TensorFlow warnings in the cells either
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "model.tflite").is_file()
    labels = json.loads((runs[0] / "labels.json").read_text())
    assert set(labels["artifacts"]) == {"h5", "tflite"} and labels["verification"]["passed"]
    print(f"notebook executed in {seconds:.1f}s")  # pytest -s shows it; ~25-30 s on 2 idle cores
