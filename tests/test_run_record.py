"""A real run's folder read back file by file; clf evaluate on it; jsonl logs; TensorBoard."""

import csv
import io
import json
import shutil
import tomllib

import numpy as np
import pytest
from typer.testing import CliRunner

import clf
from clf.cli import app
from clf.config import config_from_file
from clf.files import file_hash
from conftest import SMALL_BACKBONE, SMALL_SIZE, make_folder
from test_history_plots import assert_png

runner = CliRunner()
CLASSES = ["ant", "bee", "cat"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 2-epoch run on train/val/test folders, TensorBoard on."""
    root = tmp_path_factory.mktemp("record")
    data = make_folder(root / "data", split_dirs=True, per_class=5, val_per_class=2)
    make_folder(data / "test", per_class=2, seed=3)
    weights = root / "some.weights.h5"
    config = clf.RunConfig(backbone=SMALL_BACKBONE, data=str(data), weights="none", epochs=2, batch_size=4,
                           image_size=SMALL_SIZE, output=str(root / "run"), augment=False, tensorboard=True,
                           solver="keras")
    obs = clf.RecordingObserver()
    result = clf.run(config, obs)
    result.classifier.backbone.save_weights(str(weights))  # a real weights file to fingerprint
    return result, obs, data, weights


def test_every_file_of_the_run_folder(trained):
    result, obs, data, _ = trained
    run_dir = result.run_dir
    assert sorted(p.name for p in run_dir.iterdir()) == sorted([
        "config.toml", "manifest.json", "metrics.json", "predictions.json", "confusion_matrix.csv", "confusion_matrix.png",
        "history.csv", "training_curves.png", "labels.json", "model.h5", "model.weights.h5", "tensorboard",
        "quarantine.json", "checkpoint", "verification.json", ".clf-run", "unknown_scores.png", "deployment.json"])
    # quarantine.json: the doctor's pre-flight found nothing to leave out of this clean data
    quarantine = json.loads((run_dir / "quarantine.json").read_text())
    assert quarantine["quarantined"] == [] and quarantine["class_names"] == ["ant", "bee", "cat"]
    # checkpoint/: the last completed epoch, resumable
    from clf.train import checkpoint

    assert checkpoint.latest(run_dir, "train").epoch == 2

    # config.toml: the effective configuration, readable back into the same RunConfig
    assert config_from_file(run_dir / "config.toml") == result.config
    assert tomllib.loads((run_dir / "config.toml").read_text())["epochs"] == 2

    # manifest.json
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["format"] == "clf-manifest/1" and m["seed"] == 42 and m["backbone"] == SMALL_BACKBONE
    assert {"clf", "python", "keras", "numpy"} <= set(m["versions"]) and m["versions"]["clf"] == clf.__version__
    assert any(k.startswith("tensorflow") for k in m["versions"])
    assert m["class_names"] == CLASSES and m["image_size"] == [SMALL_SIZE, SMALL_SIZE]
    assert m["class_counts"] == {"train": {c: 5 for c in CLASSES}, "validation": {c: 2 for c in CLASSES},
                                 "test": {c: 2 for c in CLASSES}}
    assert m["split"]["train"]["bee"] == [f"train/bee/bee_{i}.jpg" for i in range(5)]
    assert m["split"]["test"]["cat"] == ["test/cat/cat_0.jpg", "test/cat/cat_1.jpg"]
    fp = m["data"]["fingerprint"]
    assert fp["files"] == 27 and len(fp["sha256"]) == 64
    assert m["weights"] == {"source": "none", "sha256": None, "note": "random initialisation"}
    assert {"data", "build", "train", "evaluate", "export", "total"} <= set(m["wall_seconds"])
    assert all(v >= 0 for v in m["wall_seconds"].values())
    assert m["wall_seconds"]["total"] >= m["wall_seconds"]["train"] > 0
    assert m["evaluated_on"] == "test" and m["artifacts"] == {"h5": ["model.h5", "model.weights.h5"]}

    # metrics.json: both splits, consistent with the confusion matrix and the run's metrics
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["evaluated_on"] == "test" and set(metrics["splits"]) == {"validation", "test"}
    test = metrics["splits"]["test"]
    cm = np.array(test["confusion_matrix"])
    assert cm.sum() == test["images"] == 6 and test["accuracy"] == pytest.approx(np.trace(cm) / 6)
    assert test["accuracy"] == pytest.approx(result.metrics["test_accuracy"])
    assert set(test["per_class"]) == set(CLASSES) and all(s["support"] == 2 for s in test["per_class"].values())
    assert set(test["top_k_accuracy"]) == {"2"} and test["top_k_accuracy"]["2"] >= test["accuracy"]
    assert result.evaluation == metrics["splits"]

    # confusion_matrix.csv: the test split's matrix
    rows = list(csv.reader(io.StringIO((run_dir / "confusion_matrix.csv").read_text())))
    assert rows[0] == ["true\\predicted", *CLASSES]
    assert [[int(v) for v in r[1:]] for r in rows[1:]] == cm.tolist() and [r[0] for r in rows[1:]] == CLASSES

    # history.csv: one row per epoch, the same numbers the observer saw
    hist = list(csv.DictReader(io.StringIO((run_dir / "history.csv").read_text())))
    epochs = [e for e in obs.events if e[0] == "epoch_end"]
    assert [(h["phase"], int(h["epoch"])) for h in hist] == [(e[1], e[2]) for e in epochs] == [("train", 1), ("train", 2)]
    assert [float(h["val_loss"]) for h in hist] == [e[4]["val_loss"] for e in epochs]
    assert [float(h["loss"]) for h in hist] == pytest.approx(result.history["loss"])

    # the PNGs are real images of non-trivial size
    assert_png(run_dir / "training_curves.png")
    assert_png(run_dir / "confusion_matrix.png")

    # labels.json and the model still do their job
    assert json.loads((run_dir / "labels.json").read_text())["class_names"] == CLASSES
    assert clf.load_predictor(run_dir).class_names == CLASSES

    # TensorBoard (the default callback plugin, on with tensorboard=True) wrote event files
    events = list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    assert not list(run_dir.glob(".tmp-*"))


def test_weights_file_is_recorded_with_its_sha256(trained):
    _, _, _, weights = trained
    from clf.report.runrecord import weights_record

    rec = weights_record(str(weights))
    assert rec["source"] == "file" and rec["sha256"] == file_hash(weights) and len(rec["sha256"]) == 64


def test_tensorboard_plugin_is_registered_and_off_by_default(host, small_config):
    factory = host.callbacks.get("tensorboard")
    assert factory.plugin == "clf.plugins.tensorboard_callback"
    assert factory.make(small_config(), None) is None


def test_evaluate_command_writes_report_and_gates_accuracy(trained, tmp_path):
    result, _, data, _ = trained
    out = tmp_path / "eval"
    res = runner.invoke(app, ["evaluate", str(result.run_dir), "--data", str(data / "test"), "--output", str(out),
                              "--assert-accuracy-at-least", "0"])
    assert res.exit_code == 0, res.output
    assert "evaluation: 6 images, accuracy" in res.output and "confusion matrix" in res.output
    saved = json.loads((out / "metrics.json").read_text())["splits"]["evaluation"]
    # the exported model on the files gives the engine's own test report
    engine = result.evaluation["test"]
    assert saved["confusion_matrix"] == engine["confusion_matrix"]
    assert saved["accuracy"] == pytest.approx(engine["accuracy"]) and saved["loss"] == pytest.approx(engine["loss"], abs=1e-4)
    assert (out / "confusion_matrix.csv").exists()
    assert_png(out / "confusion_matrix.png")

    # The same image in every class folder: one prediction, so at most 1/3 can be right.
    same = tmp_path / "same"
    for c in CLASSES:
        (same / c).mkdir(parents=True)
        shutil.copy(data / "test" / "ant" / "ant_0.jpg", same / c / "x.jpg")
    res = runner.invoke(app, ["evaluate", str(result.run_dir / "model.h5"), "--data", str(same),
                              "--assert-accuracy-at-least", "0.5"])
    assert res.exit_code == 1 and "below the required 0.5000" in res.output
    assert list((result.run_dir / "evaluations").iterdir())  # default output: inside the run folder


def test_evaluate_rejects_folders_the_model_does_not_know(trained, tmp_path):
    result, _, _, _ = trained
    make_folder(tmp_path / "other", classes=("ant", "dog"), per_class=1)
    res = runner.invoke(app, ["evaluate", str(result.run_dir), "--data", str(tmp_path / "other")])
    assert res.exit_code == 1 and "'dog'" in res.output and "ant, bee, cat" in res.output


CALLBACK_PLUGIN = """
import keras
from clf import hookimpl


def make(config, run_dir):
    class Count(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            with open(run_dir / "epochs_seen.txt", "a") as f:
                f.write(f"{epoch} {sorted(logs)}\\n")
    return Count()


@hookimpl
def register_callbacks(register):
    register("epoch_counter", make, description="test: counts epochs")
"""


def test_cli_jsonl_logs_and_a_callback_plugin(image_folder, tmp_path):
    plugin = tmp_path / "counter_plugin.py"
    plugin.write_text(CALLBACK_PLUGIN)
    res = runner.invoke(app, ["run", "--backbone", SMALL_BACKBONE, "--data", str(image_folder), "--epochs", "2",
                              "--batch-size", "4", "--image-size", str(SMALL_SIZE), "--weights", "none",
                              "--no-augment", "--output", str(tmp_path / "run"), "--log-format", "jsonl",
                              "--plugin", str(plugin), "--solver", "keras"])
    assert res.exit_code == 0, res.output
    # the fifth hook: a third-party plugin's Keras callback ran on every epoch
    seen = (tmp_path / "run" / "epochs_seen.txt").read_text().splitlines()
    assert seen == ["0 ['accuracy', 'learning_rate', 'loss', 'val_accuracy', 'val_loss']",
                    "1 ['accuracy', 'learning_rate', 'loss', 'val_accuracy', 'val_loss']"]
    events = [json.loads(line) for line in res.output.splitlines()]
    kinds = [e["event"] for e in events]
    # the deployment table comes last, after the evaluation report
    assert kinds.count("epoch") == 2 and kinds[-2:] == ["report", "deployment"] and "note" in kinds
    assert events[-2]["reports"]["validation"]["class_names"] == CLASSES
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(next(e for e in events if e["event"] == "epoch"))
