"""Unknown photos where answers leave clf (issue 27): ``clf predict`` (table, CSV, JSON, shards),
``clf serve`` (JSON, /metadata, OpenAPI) and the Python API carry the model's known score and
reach the same accept/reject decision on the same photos; ``--unknown off`` and models without
a known score answer as before."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import clf
from clf.artifacts.labels import is_known
from clf.artifacts.predict import Prediction, to_predictions
from clf.artifacts.predict_output import to_csv, to_json
from clf.artifacts.shards import merge_predictions, shard_files
from clf.cli import app
from conftest import SMALL_BACKBONE, SMALL_SIZE, make_folder

runner = CliRunner()
LEGACY = Path(__file__).parent / "fixtures" / "legacy_run" / "bundle"  # written before known scores existed


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small run with the default known score (unknown="auto"), and photos to ask it about:
    held-out photos like the training images, and flat or noisy ones unlike any of them."""
    root = tmp_path_factory.mktemp("unknown-predict")
    data = make_folder(root / "data", per_class=6)
    result = clf.run(clf.RunConfig(backbone=SMALL_BACKBONE, data=str(data), weights="none", epochs=1,
                                   batch_size=4, image_size=SMALL_SIZE, output=str(root / "run"), augment=False,
                                   cache=False, verify=False, export=("h5",)))
    photos = root / "photos"
    for path in make_folder(root / "held-out", per_class=2, seed=3).rglob("*.jpg"):
        (photos / path.name).parent.mkdir(parents=True, exist_ok=True)
        (photos / path.name).write_bytes(path.read_bytes())
    rng = np.random.default_rng(0)
    odd = {"white": np.full((40, 40, 3), 255, np.uint8), "green": np.full((40, 40, 3), (0, 200, 0), np.uint8),
           "noise": rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)}
    for name, pixels in odd.items():
        Image.fromarray(pixels).save(photos / f"odd_{name}.jpg")
    return result, sorted(photos.glob("*.jpg"))


def _decisions(rows) -> dict[str, tuple[str, bool]]:
    """``{file name: (top class, unknown)}`` from rows with a path/name, a class and an unknown flag."""
    return {Path(path).name: (cls, bool(unknown)) for path, cls, unknown in rows}


def test_predictions_carry_the_known_score_and_its_decision(run):
    result, photos = run
    labels = json.loads((result.run_dir / "labels.json").read_text())
    assert labels["unknown"]["column"] == len(result.class_names)
    predictor = clf.load_predictor(result.run_dir, runtime="tensorflow")
    predictions = clf.predict_files(predictor, photos)
    scores = result.known_scores([str(p) for p in photos])
    # The API's predictions: probabilities only, the known score of the model's last column, its verdict.
    assert all(len(p.probabilities) == len(result.class_names) for p in predictions)
    np.testing.assert_array_equal([p.known_score for p in predictions], scores)
    np.testing.assert_array_equal([p.probabilities for p in predictions], result.predict([str(p) for p in photos]))
    assert [p.unknown for p in predictions] == [not is_known(labels, s) for s in scores]
    by_name = {Path(p.path).name: p for p in predictions}
    # The photos unlike the training images are the unknown ones; the held-out ones are known.
    assert {n for n, p in by_name.items() if p.unknown} == {n for n in by_name if n.startswith("odd_")}
    # An unknown photo still names the class it would have been.
    white = by_name["odd_white.jpg"]
    assert white.top()[0][0] == result.class_names[int(np.argmax(white.probabilities))]

    # unknown="off": the score ignored, the probabilities unchanged.
    off = clf.predict_files(clf.load_predictor(result.run_dir, runtime="tensorflow", unknown="off"), photos)
    assert [(p.known_score, p.unknown) for p in off] == [(None, False)] * len(photos)
    assert [p.probabilities for p in off] == [p.probabilities for p in predictions]
    with pytest.raises(clf.ConfigError, match=r"Invalid unknown 'maybe': expected one of auto, off"):
        clf.load_predictor(result.run_dir, unknown="maybe")
    # Raw outputs of arrays in memory (predict_batch) reach the same decision through to_predictions.
    images = np.stack([predictor.decoder.from_file(str(p)) for p in photos])
    from_arrays = to_predictions(predictor, [p.name for p in photos], predictor.predict_batch(images))
    assert [(p.known_score, p.unknown) for p in from_arrays] == [(p.known_score, p.unknown) for p in predictions]


def test_predict_shows_unknown_photos_in_the_table_csv_and_json(run, monkeypatch):
    from clf.cli.app import out

    monkeypatch.setattr(out, "width", 200)  # the console's width was fixed when the CLI was first imported
    result, photos = run
    folder = str(photos[0].parent)
    base = ["predict", str(result.run_dir), folder, "--runtime", "tensorflow"]
    api = {Path(p.path).name: p for p in clf.predict_files(clf.load_predictor(result.run_dir, runtime="tensorflow"),
                                                          photos)}

    table = runner.invoke(app, [*base, "--top-k", "2"])
    assert table.exit_code == 0, table.output
    assert "known score" in table.stdout
    white = api["odd_white.jpg"]
    assert f"unknown (would be: {white.top()[0][0]})" in table.stdout
    assert f"{white.known_score:.4f}" in table.stdout and f"{white.top()[0][1]:.4f}" in table.stdout
    assert table.stdout.count("unknown (would be:") == sum(p.unknown for p in api.values())

    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, [*base, "--format", "csv"]).stdout)))
    assert list(rows[0]) == ["path", "class_1", "probability_1", "error", "known_score", "unknown"]
    assert _decisions((r["path"], r["class_1"], r["unknown"] == "true") for r in rows) == \
        _decisions((n, p.top()[0][0], p.unknown) for n, p in api.items())
    assert all(float(r["known_score"]) == pytest.approx(api[Path(r["path"]).name].known_score, abs=1e-6)
               for r in rows)

    records = json.loads(runner.invoke(app, [*base, "--json"]).stdout)
    assert all(r["known_score"] == api[Path(r["path"]).name].known_score for r in records)
    assert _decisions((r["path"], r["top"][0]["class"], r["unknown"]) for r in records) == \
        _decisions((n, p.top()[0][0], p.unknown) for n, p in api.items())

    # --unknown off: the answers and columns of a model without a known score.
    off = runner.invoke(app, [*base, "--format", "csv", "--unknown", "off"])
    assert off.exit_code == 0 and off.stdout.splitlines()[0] == "path,class_1,probability_1,error"
    bad = runner.invoke(app, [*base, "--unknown", "maybe"])
    assert bad.exit_code == 2 and "expected one of auto, off" in bad.output


def test_models_without_a_known_score_answer_as_before():
    inputs = str(LEGACY.parent / "inputs")
    base = ["predict", str(LEGACY), inputs, "--trust-artifact", "--runtime", "tensorflow"]
    out = runner.invoke(app, [*base, "--format", "csv", "--top-k", "2"])
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines()[0] == "path,class_1,probability_1,class_2,probability_2,error"
    records = json.loads(runner.invoke(app, [*base, "--json"]).stdout)
    assert all(set(r) == {"path", "error", "top", "artifact"} for r in records)  # artifact: which answered
    table = runner.invoke(app, base, env={"COLUMNS": "200"}).stdout
    assert "known score" not in table and "unknown" not in table
    predictor = clf.load_predictor(LEGACY, trust=True)
    assert all(p.known_score is None and not p.unknown
               for p in clf.predict_files(predictor, sorted(Path(inputs).iterdir())))


def test_parts_with_and_without_the_known_columns_do_not_merge(tmp_path):
    # (tests/test_shards.py merges real parts of a model with a known score into the unsharded file.)
    results = [Prediction(f"img/{i}.png", [0.25, 0.75], known_score=0.5, unknown=False) for i in range(6)]
    for fmt, write in (("csv", to_csv), ("json", to_json)):
        parts = []
        for k in range(2):
            picked, columns = shard_files([r.path for r in results], (k, 2), "1a2b3c4d5e6f7a8b")
            parts.append(tmp_path / f"part-{k}.{fmt}")
            parts[-1].write_text(write([r for r in results if r.path in set(picked)], ["a", "b"], 2, columns,
                                       known_score=k == 0))  # part 1 as --unknown off writes it
        with pytest.raises(clf.DataError, match=r"different columns \(different --top-k or --unknown\?\)"):
            merge_predictions(parts)


RESULTS = [Prediction(f"img/{i}.png", [0.25, 0.75], known_score=0.1 * i, unknown=i < 5) for i in range(8)] + \
    [Prediction("bad.png", error="empty")]


@pytest.mark.parametrize("fmt, old, new, message", [
    ("csv", ",0.000000,true,", ",0.000000,maybe,", r"unknown 'maybe' is not true or false"),
    ("csv", ",0.000000,true,", ",2.5,true,", r"probability '2.5' is not a number between 0 and 1"),
    ("csv", ",0.000000,true,", ",,true,", r"known_score '' and unknown 'true' in a predicted row"),
    ("json", '"unknown": true', '"unknown": 1', r"unknown 1 is not true or false"),
    ("json", '"known_score": 0.0', '"known_score": null', r"known_score null and unknown true in a predicted row"),
])
def test_merge_checks_the_known_cells(tmp_path, fmt, old, new, message):
    write = to_json if fmt == "json" else to_csv
    parts = []
    for k in range(2):
        picked, columns = shard_files([r.path for r in RESULTS], (k, 2), "1a2b3c4d5e6f7a8b")
        parts.append(tmp_path / f"part-{k}.{fmt}")
        parts[-1].write_text(write([r for r in RESULTS if r.path in set(picked)], ["a", "b"], 2, columns,
                                   known_score=True))
    assert merge_predictions(parts) == (fmt, write(RESULTS, ["a", "b"], 2, known_score=True))
    part = next(p for p in parts if old in p.read_text())
    part.write_text(part.read_text().replace(old, new, 1))
    with pytest.raises(clf.DataError, match=message):
        merge_predictions(parts)


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")  # the test client it ships
def test_the_same_decision_from_predict_serve_and_the_api(run):
    from starlette.testclient import TestClient

    from clf.serve import ServeSettings, create_app

    result, photos = run
    names = [p.name for p in photos]
    answers = {}
    # The Python API: RunResult (the model in memory) and load_predictor + predict_files.
    labels = json.loads((result.run_dir / "labels.json").read_text())
    scores = result.known_scores([str(p) for p in photos])
    top = np.asarray(result.class_names)[result.predict([str(p) for p in photos]).argmax(1)]
    answers["RunResult"] = _decisions((n, c, not is_known(labels, s)) for n, c, s in zip(names, top, scores))
    predictor = clf.load_predictor(result.run_dir, runtime="tensorflow")
    answers["predict_files"] = _decisions((p.path, p.top()[0][0], p.unknown)
                                          for p in clf.predict_files(predictor, photos))
    # clf predict
    cli = runner.invoke(app, ["predict", str(result.run_dir), *map(str, photos), "--json", "--runtime", "tensorflow"])
    answers["clf predict"] = _decisions((r["path"], r["top"][0]["class"], r["unknown"]) for r in json.loads(cli.stdout))
    # clf serve, one request per photo (through the micro-batcher) and one request with them all
    with TestClient(create_app(predictor, ServeSettings(max_batch=4)), base_url="http://localhost") as client:
        served = [client.post("/predict", content=p.read_bytes(), params={"name": p.name},
                              headers={"Content-Type": "image/jpeg"}).json()["predictions"][0] for p in photos]
        answers["clf serve"] = _decisions((r["name"], r["class"], r["unknown"]) for r in served)
        together = client.post("/predict", files=[("file", (p.name, p.read_bytes(), "image/jpeg")) for p in photos])
        answers["clf serve, one request"] = _decisions((r["name"], r["class"], r["unknown"])
                                                       for r in together.json()["predictions"])
        np.testing.assert_array_equal([r["known_score"] for r in served], scores)
        meta = client.get("/metadata").json()
        assert meta["unknown"]["applied"] is True and meta["unknown"]["threshold"] == labels["unknown"]["threshold"]
        assert meta["unknown"]["score"] == labels["unknown"]["score"] and meta["unknown"]["output"] == "known_score"
        schema = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["responses"]["200"]
        row = schema["content"]["application/json"]["schema"]["properties"]["predictions"]["items"]
        assert {"known_score", "unknown"} <= set(row["required"]) and row["properties"]["unknown"]["type"] == "boolean"
    reference = answers.pop("clf predict")
    assert any(unknown for _, unknown in reference.values()) and not all(u for _, u in reference.values())
    for path, got in answers.items():
        assert got == reference, f"{path} decides otherwise than clf predict"

    # --unknown off: no known fields, and /metadata says the rule is not applied.
    off = clf.load_predictor(result.run_dir, runtime="tensorflow", unknown="off")
    with TestClient(create_app(off, ServeSettings(max_batch=4)), base_url="http://localhost") as client:
        row = client.post("/predict", content=photos[0].read_bytes(),
                          headers={"Content-Type": "image/jpeg"}).json()["predictions"][0]
        assert "known_score" not in row and "unknown" not in row
        assert client.get("/metadata").json()["unknown"]["applied"] is False
        schema = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["responses"]["200"]
        item = schema["content"]["application/json"]["schema"]["properties"]["predictions"]["items"]
        assert "known_score" not in item["properties"]


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_serve_of_a_model_without_a_known_score_is_unchanged():
    from starlette.testclient import TestClient

    from clf.serve import ServeSettings, create_app

    predictor = clf.load_predictor(LEGACY, trust=True)
    photo = sorted((LEGACY.parent / "inputs").iterdir())[0]
    with TestClient(create_app(predictor, ServeSettings(max_batch=1)), base_url="http://localhost") as client:
        row = client.post("/predict", content=photo.read_bytes(),
                          headers={"Content-Type": "image/png"}).json()["predictions"][0]
        assert set(row) == {"name", "class", "probability", "top", "probabilities"}
        assert client.get("/metadata").json()["unknown"] is None
