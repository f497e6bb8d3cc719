"""One photo, one answer: clf predict, clf serve, clf evaluate, clf verify and
RunResult.predict decode with the same decoder and run the same traced forward, so the same
photos get bit-identical probabilities (and known scores) from each of them (same runtime,
TensorFlow here)."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import clf
from conftest import make_folder


@pytest.fixture(scope="module")
def run_and_photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("one-answer")
    data = make_folder(root / "data", per_class=4)
    result = clf.run(clf.RunConfig(backbone="mobilenet_025", data=str(data), weights="none", epochs=1,
                                   batch_size=4, image_size=32, output=str(root / "run"), augment=False,
                                   solver="keras", verify=False, export=("h5",)))
    # Held-out photos in class folders (for clf evaluate), larger than the model's input, so
    # decoding resizes for real.
    held_out = make_folder(root / "held-out", per_class=3, seed=1)
    files = sorted(held_out.rglob("*.jpg"))
    return result, held_out, files


def _by_name(paths, rows):
    return {Path(p).name: np.asarray(r, np.float64) for p, r in zip(paths, rows)}


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")  # the test client it ships
def test_every_path_gives_the_same_probabilities(run_and_photos):
    from starlette.testclient import TestClient

    from clf.artifacts.verify import verify_artifact
    from clf.cli import app
    from clf.report.evaluation import evaluate_folder
    from clf.serve import ServeSettings, create_app

    result, held_out, files = run_and_photos
    names = result.class_names
    answers = {}
    known = {}  # the known score (issue 27): one more output column, the same in every path

    # RunResult.predict (the Python API)
    answers["RunResult.predict"] = _by_name(files, result.predict([str(f) for f in files]))
    known["RunResult.known_scores"] = _by_name(files, result.known_scores([str(f) for f in files]))

    # clf predict (the CLI, JSON with every class)
    out = CliRunner().invoke(app, ["predict", str(result.run_dir), str(held_out), "--json", "--top-k",
                                   str(len(names)), "--runtime", "tensorflow"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout[out.stdout.index("["):])
    answers["clf predict"] = {Path(r["path"]).name: np.asarray([{t["class"]: t["probability"] for t in r["top"]}[n]
                                                                for n in names], np.float64) for r in rows}
    known["clf predict"] = {Path(r["path"]).name: np.float64(r["known_score"]) for r in rows}

    # clf serve (one request per photo, through the app's micro-batcher)
    predictor = clf.load_predictor(result.run_dir, runtime="tensorflow")
    # base_url: the app answers loopback Host names only (--allowed-hosts), not "testserver".
    with TestClient(create_app(predictor, ServeSettings(max_batch=4)), base_url="http://localhost") as client:
        served, known_served = {}, {}
        for f in files:
            res = client.post("/predict", content=f.read_bytes(), headers={"Content-Type": "image/jpeg"})
            assert res.status_code == 200, res.text
            served[f.name] = np.asarray(res.json()["predictions"][0]["probabilities"], np.float64)
            known_served[f.name] = np.float64(res.json()["predictions"][0]["known_score"])
    answers["clf serve"] = served
    known["clf serve"] = known_served

    # clf evaluate
    evaluation = evaluate_folder(result.run_dir, held_out, output=result.run_dir.parent / "evaluation",
                                 runtime="tensorflow")
    answers["clf evaluate"] = _by_name([p.path for p in evaluation.predictions],
                                       [p.probabilities for p in evaluation.predictions])

    # clf verify (the reference model's answers on the images it checks)
    report = verify_artifact(result.run_dir / "model.h5", data=[str(held_out)])
    answers["clf verify"] = _by_name(report.images, np.asarray(report.reference_probs)[:, :len(names)])
    known["clf verify"] = _by_name(report.images, np.asarray(report.reference_probs)[:, len(names)])

    reference = answers.pop("clf predict")
    assert len(reference) == len(files)
    for path, got in answers.items():
        assert set(got) == set(reference), path
        for name, probs in reference.items():
            np.testing.assert_array_equal(got[name], probs, err_msg=f"{path} differs from clf predict on {name}")
    reference = known.pop("clf predict")
    for path, got in known.items():
        assert got == reference, f"{path}'s known scores differ from clf predict's"
