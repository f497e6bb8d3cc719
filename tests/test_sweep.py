"""clf run --backbone a,b --folds K: each backbone scored by K-fold cross-validation, the
leaderboard (printed, sweep.json, leaderboard.png), the best trained and exported."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import clf
from clf.cli import app
from clf.errors import ConfigError
from clf.train.sweep import sweep
from conftest import SMALL_BACKBONE, SMALL_SIZE, make_folder

runner = CliRunner()
OTHER = "mobilenet_v2_035"


def test_sweep_leaderboard_and_best_run(tmp_path):
    data = make_folder(tmp_path / "data", per_class=6)
    res = runner.invoke(app, ["run", "--backbone", f"{SMALL_BACKBONE},{OTHER}", "--folds", "2", "--data", str(data),
                              "--weights", "none", "--image-size", str(SMALL_SIZE), "--no-augment", "--no-verify",
                              "--output", str(tmp_path / "best"), "--log-format", "plain"])
    assert res.exit_code == 0, res.output
    assert "backbones by 2-fold accuracy" in res.output and "best backbone" in res.output
    record = json.loads((tmp_path / "best" / "sweep.json").read_text())
    board = record["leaderboard"]
    assert [e["backbone"] for e in board] in ([SMALL_BACKBONE, OTHER], [OTHER, SMALL_BACKBONE])
    assert board[0]["accuracy"]["mean"] >= board[1]["accuracy"]["mean"] and record["best"] == board[0]["backbone"]
    assert (tmp_path / "best" / "leaderboard.png").stat().st_size > 0
    # the exported run is the best backbone's, and its --folds scores are the leaderboard's
    labels = json.loads((tmp_path / "best" / "labels.json").read_text())
    assert labels["backbone"] == record["best"]
    metrics = json.loads((tmp_path / "best" / "metrics.json").read_text())
    assert metrics["cross_validation"]["accuracy"] == board[0]["accuracy"]


def test_sweep_refusals(tmp_path):
    config = clf.RunConfig(data=str(tmp_path), weights="none")
    with pytest.raises(ConfigError, match="--folds K"):
        sweep(config, [SMALL_BACKBONE, OTHER])
    with pytest.raises(ConfigError, match="weights file"):
        sweep(config.replace(folds=3, weights=str(tmp_path / "w.h5")), [SMALL_BACKBONE, OTHER])
    with pytest.raises(ConfigError, match="different backbone"):
        sweep(config.replace(folds=3), [SMALL_BACKBONE, SMALL_BACKBONE])
    with pytest.raises(clf.UnknownComponentError):
        sweep(config.replace(folds=3), [SMALL_BACKBONE, "nosuchnet"])
