"""The deployment table (clf.artifacts.deployment): McNemar's exact p-value, and every number of
deployment.json against a direct computation through the artifacts' own runtimes."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from clf.artifacts.deployment import DEPLOYMENT_FILE, mcnemar_p, read_table
from clf.artifacts.predict import load_predictor
from clf.cli import app
from conftest import copy_run

runner = CliRunner()


@pytest.mark.parametrize("ref,got", [
    ([1, 1, 1, 1, 1], [0, 0, 0, 0, 0]),  # b=5, c=0
    ([1, 0, 1, 0, 1, 1, 0, 1], [0, 1, 1, 0, 0, 0, 1, 1]),
    ([1] * 30 + [0] * 10, [1] * 25 + [0] * 5 + [1] * 7 + [0] * 3),
])
def test_mcnemar_p_is_the_exact_binomial_test_on_discordant_pairs(ref, got):
    from scipy.stats import binomtest

    ref, got = np.array(ref, bool), np.array(got, bool)
    b, c = int(np.sum(ref & ~got)), int(np.sum(~ref & got))
    assert mcnemar_p(ref, got) == pytest.approx(binomtest(b, b + c, 0.5).pvalue)


def test_mcnemar_p_without_discordant_pairs_is_one():
    assert mcnemar_p(np.array([1, 0, 1], bool), np.array([1, 0, 1], bool)) == 1.0
    assert mcnemar_p(np.array([1] * 5, bool), np.array([0] * 5, bool)) == pytest.approx(0.0625)  # 2 / 2**5


def test_default_h5_run_has_one_untimed_row(trained_run):
    rows = read_table(trained_run.run_dir)
    assert [r["artifact"] for r in rows] == ["h5"]
    row = rows[0]
    assert row["latency_ms"] is None and row["throughput"] is None  # nothing timed without another runtime
    assert row["difference"] == 0.0 and row["p_value"] == 1.0
    assert row["size_bytes"] == (trained_run.run_dir / "model.h5").stat().st_size


def test_export_prints_the_table_and_its_numbers_are_the_runtimes_own(trained_run, tmp_path):
    run_dir = copy_run(trained_run, tmp_path / "run")
    res = runner.invoke(app, ["export", str(run_dir), "--export", "tflite", "--log-format", "plain"])
    assert res.exit_code == 0, res.output
    assert "deployment" in res.output and "model.tflite" in res.output and "McNemar p" in res.output

    labels = json.loads((run_dir / "labels.json").read_text())
    record = json.loads((run_dir / "verification.json").read_text())
    files = record["images"]
    classes = labels["class_names"]
    targets = np.array([classes.index(Path(f).parent.name) for f in files])
    tflite = load_predictor(run_dir / "model.tflite")
    keras = load_predictor(run_dir / "model.h5")
    got = tflite.predict_batch(tflite.decoder.batch(files))
    ref = keras.predict_batch(keras.decoder.batch(files))
    k = len(classes)
    rows = {r["artifact"]: r for r in json.loads((run_dir / DEPLOYMENT_FILE).read_text())["rows"]}
    row = rows["tflite"]
    assert row["images"] == len(files) and row["runtime"] == tflite.runtime
    assert row["accuracy"] == pytest.approx(np.mean(got[:, :k].argmax(1) == targets))
    assert row["keras_accuracy"] == pytest.approx(np.mean(ref[:, :k].argmax(1) == targets))
    assert row["difference"] == pytest.approx(row["accuracy"] - row["keras_accuracy"])
    assert row["top1_agreement"] == pytest.approx(np.mean(got[:, :k].argmax(1) == ref[:, :k].argmax(1)))
    assert row["max_abs_diff"] == pytest.approx(np.max(np.abs(got - ref)), abs=2e-5)
    assert row["p_value"] == pytest.approx(mcnemar_p(ref[:, :k].argmax(1) == targets, got[:, :k].argmax(1) == targets))
    assert row["size_bytes"] == (run_dir / "model.tflite").stat().st_size
    assert row["latency_ms"] > 0 and row["throughput"] > 0  # another runtime: timed
    assert "h5" in rows  # the run's own row is kept beside the new one
