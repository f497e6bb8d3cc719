"""The known score in the reports: clf evaluate (known images rejected, accuracy among the
accepted; --unknown-data: AUROC, FPR@95TPR, unknowns accepted), its numpy metrics against
scikit-learn's, and the run's record (unknown_scores.png, validation_known_accepted, summary)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from clf.artifacts.labels import is_known
from clf.cli import app
from clf.errors import DataError
from clf.report.evaluation import unknown_report
from clf.report.metrics import auroc, fpr_at_tpr
from conftest import copy_run, make_folder
from test_history_plots import assert_png

runner = CliRunner()


@pytest.mark.parametrize("seed", range(6))
def test_auroc_and_fpr_at_95_tpr_match_scikit_learn(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    n_known, n_unknown = rng.integers(1, 60, size=2)
    # Rounded scores: ties within and across the two sets, as a saturated sigmoid gives.
    known = np.round(rng.normal(1.0, 1.0, n_known), 1 if seed % 2 else 3)
    unknown = np.round(rng.normal(0.0, 1.0, n_unknown), 1 if seed % 2 else 3)
    y = np.r_[np.ones(n_known), np.zeros(n_unknown)]
    scores = np.r_[known, unknown]
    assert auroc(known, unknown) == pytest.approx(metrics.roc_auc_score(y, scores))
    fpr, tpr, _ = metrics.roc_curve(y, scores, drop_intermediate=False)
    assert fpr_at_tpr(known, unknown) == pytest.approx(fpr[np.searchsorted(tpr, 0.95)])


def test_fpr_at_tpr_on_exact_shares():
    known = np.arange(20, dtype=float)  # 19 of 20 is exactly 95%: the threshold is the 19th best, 1.0
    assert fpr_at_tpr(known, np.array([0.5, 1.0, 2.0, -1.0])) == 0.5
    assert auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert auroc(np.array([1.0]), np.array([1.0])) == 0.5
    with pytest.raises(DataError, match="0 unknown"):
        auroc(np.array([1.0]), np.zeros(0))


def test_unknown_report_counts_rejections_and_accuracy_among_the_accepted():
    labels = {"class_names": ["a", "b"], "unknown": {"score": "maha", "threshold": 0.5, "column": 2}}
    y = np.array([0, 1, 0, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])  # rows 0 and 3 right
    known = np.array([0.9, 0.5, 0.2, 0.7])  # row 2 rejected (0.5 is accepted: >= threshold)
    u = unknown_report(labels, y, probs, known)
    assert u == {"score": "maha", "threshold": 0.5, "known_images": 4, "known_rejected": 0.25, "known_accepted": 3,
                 "accuracy_accepted": pytest.approx(2 / 3)}
    u = unknown_report(labels, y, probs, known, np.array([0.1, 0.6]))
    assert u["unknown_images"] == 2 and u["unknown_accepted"] == 0.5
    assert u["auroc"] == pytest.approx(auroc(known, np.array([0.1, 0.6])))
    assert u["fpr_at_95_tpr"] == 0.5  # 95% of 4 known needs all four, down to 0.2: 0.6 passes
    none = unknown_report(labels, y, probs, np.array([0.1, 0.1, 0.1, 0.1]))
    assert none["known_rejected"] == 1.0 and none["accuracy_accepted"] is None


def _noise(folder, n=6):
    """Photos of no trained class: flat grey and noise, in nested folders."""
    rng = np.random.default_rng(1)
    for i in range(n):
        path = folder / ("deep" if i % 2 else "") / f"x{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) if i % 3 else np.full((40, 40, 3), 128, np.uint8)
        Image.fromarray(pixels).save(path)
    return folder


def test_evaluate_reports_the_known_score_and_unknown_data(trained_run, tmp_path):
    result = trained_run.result
    assert result.manifest.get("unknown"), "the shared run should have a known score (--unknown auto)"
    strangers = _noise(tmp_path / "strangers")
    out = tmp_path / "eval"
    res = runner.invoke(app, ["evaluate", str(result.run_dir), "--data", str(trained_run.data),
                              "--unknown-data", str(strangers), "--output", str(out), "--log-format", "plain"])
    assert res.exit_code == 0, res.output
    assert "known images rejected as unknown" in res.output and "AUROC" in res.output, res.output
    saved = json.loads((out / "metrics.json").read_text())["splits"]["evaluation"]["unknown"]

    # The same decision as the API's known column and labels.json's rule, image by image.
    files = sorted(p for p in trained_run.data.rglob("*.jpg"))
    scores = result.known_scores([str(f) for f in files])
    labels = json.loads((result.run_dir / "labels.json").read_text())
    accepted = np.array([is_known(labels, float(s)) for s in scores])
    assert saved["known_images"] == len(files) and saved["known_accepted"] == int(accepted.sum())
    assert saved["known_rejected"] == pytest.approx(1 - accepted.mean())
    others = result.known_scores(str(strangers))
    assert saved["unknown_images"] == 6 and saved["unknown_data"] == str(strangers)
    assert saved["unknown_accepted"] == pytest.approx(np.mean([is_known(labels, float(s)) for s in others]))
    assert saved["auroc"] == pytest.approx(auroc(scores, others), abs=1e-6)
    assert saved["fpr_at_95_tpr"] == pytest.approx(fpr_at_tpr(scores, others), abs=1e-6)


def test_evaluate_without_unknown_data_and_its_errors(trained_run, tmp_path):
    result = trained_run.result
    res = runner.invoke(app, ["evaluate", str(result.run_dir), "--data", str(trained_run.data), "--output",
                              str(tmp_path / "eval"), "--log-format", "jsonl"])
    assert res.exit_code == 0, res.output
    report = next(json.loads(line) for line in res.output.splitlines() if '"report"' in line)
    u = report["reports"]["evaluation"]["unknown"]
    assert "auroc" not in u and u["known_images"] == 18 and u["score"] == result.manifest["unknown"]["score"]

    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["evaluate", str(result.run_dir), "--data", str(trained_run.data),
                              "--unknown-data", str(tmp_path / "empty"), "--output", str(tmp_path / "e2")])
    assert res.exit_code != 0 and "holds no images" in res.output

    # A model without a known score (labels.json without "unknown", as --unknown off writes it).
    run_dir = copy_run(trained_run, tmp_path / "off")
    labels = json.loads((run_dir / "labels.json").read_text())
    del labels["unknown"]
    (run_dir / "labels.json").write_text(json.dumps(labels))
    res = runner.invoke(app, ["evaluate", str(run_dir), "--data", str(trained_run.data),
                              "--unknown-data", str(_noise(tmp_path / "s"))])
    assert res.exit_code != 0 and "has no known score" in res.output and "--unknown off" in res.output, res.output


def test_run_record_shows_the_known_score(trained_run):
    result = trained_run.result
    run_dir, record = result.run_dir, result.manifest["unknown"]
    assert_png(run_dir / "unknown_scores.png")
    files = next(e for e in trained_run.observer.events if e[0] == "phase_end" and e[1] == "record")[2]["files"]
    assert "unknown_scores.png" in [Path(p).name for p in files]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["validation_known_accepted"] == record["validation_accepted"]
    assert result.metrics["validation_known_accepted"] == record["validation_accepted"]
    assert f"unknown={record['score']!r}" in repr(result)
    page = result._repr_html_()
    assert "unknown photos:" in page and 'alt="known score"' in page
    assert f"{record['accept_known']:.0%} of the training images" in page


def test_unknown_histogram_without_validation(tmp_path):
    from clf.report.plots import plot_unknown_scores

    path = plot_unknown_scores(np.random.default_rng(0).normal(size=40), None, -1.5, tmp_path / "u.png",
                               kind="maha", accept_known=0.95)
    assert_png(path)


def test_summary_of_a_run_without_a_known_score(tmp_path):
    from types import SimpleNamespace

    from clf.report.summary import html, text

    result = SimpleNamespace(config=SimpleNamespace(backbone="b", image_size=32), run_dir=tmp_path, class_names=["a"],
                             metrics={"validation_accuracy": 1.0}, artifacts={}, evaluation={}, manifest={})
    assert "unknown='off'" in text(result) and "validation_known_accepted" not in text(result)
    assert "no known score" in html(result) and "<img" not in html(result)
