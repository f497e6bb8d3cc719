"""clf compare: runs paired on the same images (bootstrap interval, McNemar's test, photos
right in one run only, per-class recall, a page with thumbnails), without TensorFlow."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import clf
from clf.cli import app
from clf.errors import DataError
from clf.inspect.compare import compare_runs
from clf.report.confidence import mcnemar, paired_bootstrap
from conftest import SMALL_BACKBONE, SMALL_SIZE, make_folder

runner = CliRunner()


def test_mcnemar_exact_and_approximate():
    from scipy.stats import binomtest

    a = np.array([1] * 9 + [0] * 2 + [1] * 20, bool)
    b = np.array([0] * 9 + [1] * 2 + [1] * 20, bool)
    got = mcnemar(a, b)
    assert (got["right_only_a"], got["right_only_b"], got["method"]) == (9, 2, "exact binomial")
    assert got["p_value"] == pytest.approx(binomtest(2, 11, 0.5).pvalue)
    assert mcnemar(a, a)["p_value"] == 1.0
    many_a = np.array([1] * 700 + [0] * 600, bool)  # 1300 discordant: chi-square, continuity-corrected
    far = mcnemar(many_a, ~many_a)
    assert far["method"].startswith("chi-square")
    assert far["p_value"] == pytest.approx(math.erfc(math.sqrt((100 - 1) ** 2 / 1300 / 2)))
    assert far["p_value"] == pytest.approx(binomtest(600, 1300, 0.5).pvalue, rel=0.05)


def test_paired_bootstrap_interval():
    rng = np.random.default_rng(1)
    a = rng.random(400) < 0.7
    b = a.copy()
    b[:20] = True  # B gets 20 more photos (at most) right
    got = paired_bootstrap(a, b)
    assert got["difference"] == pytest.approx(b.mean() - a.mean())
    assert got["low"] <= got["difference"] <= got["high"] and got["low"] >= 0
    assert paired_bootstrap(a, b) == got  # seeded
    same = paired_bootstrap(a, a)
    assert same["low"] == same["high"] == 0.0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs on the same data (the solved head, and one epoch of Keras fit on random
    features), and a third on another validation split (another seed)."""
    root = tmp_path_factory.mktemp("compare")
    data = make_folder(root / "data", per_class=8)
    common = dict(backbone=SMALL_BACKBONE, data=str(data), weights="none", image_size=SMALL_SIZE, batch_size=8,
                  augment=False, verify=False, cache_dir=str(root / "cache"))
    a = clf.run(**common, output=str(root / "solved"))
    b = clf.run(**common, solver="keras", epochs=1, lr=0.001, output=str(root / "keras"))
    c = clf.run(**common, seed=7, output=str(root / "seed7"))
    return a.run_dir, b.run_dir, c.run_dir


def test_compare_pairs_runs(runs, tmp_path):
    a, b, _ = runs
    result = compare_runs([a, b], output=tmp_path / "cmp")
    r = result.record
    pa = {row["file"]: row for row in json.loads((a / "predictions.json").read_text())["splits"]["validation"]}
    pb = {row["file"]: row for row in json.loads((b / "predictions.json").read_text())["splits"]["validation"]}
    right_a = np.array([pa[f]["predicted"] == pa[f]["label"] for f in pa])
    right_b = np.array([pb[f]["predicted"] == pb[f]["label"] for f in pa])
    pair = r["pairs"][0]
    assert r["images"] == len(pa) == 6 and r["split"] == "validation"
    assert pair["difference"] == pytest.approx(right_b.mean() - right_a.mean())
    assert (pair["right_only_a"], pair["right_only_b"]) == (int(np.sum(right_a & ~right_b)), int(np.sum(right_b & ~right_a)))
    assert sorted(x["file"] for x in pair["right_only_in_a"]) == sorted(f for f, ok, ok_b in zip(pa, right_a, right_b) if ok and not ok_b)
    metrics_a = json.loads((a / "metrics.json").read_text())["splits"]["validation"]
    assert r["runs"][0]["accuracy"] == pytest.approx(metrics_a["accuracy"])
    assert [c["recall"][0] for c in r["per_class"]] == pytest.approx(
        [metrics_a["per_class"][n]["recall"] for n in r["class_names"]])
    page = (tmp_path / "cmp" / "index.html").read_text()
    assert "recall per class" in page and json.loads((tmp_path / "cmp" / "comparison.json").read_text())["pairs"]
    shown = pair["right_only_in_a"] + pair["right_only_in_b"]
    assert len(list((tmp_path / "cmp" / "thumbs").glob("*.jpg")) if shown else []) == len(shown)


def test_compare_refuses_other_images(runs, tmp_path):
    a, _, other_split = runs
    with pytest.raises(DataError, match="different validation images: .*only in solved.*same --seed"):
        compare_runs([a, other_split], page=False)
    # the same file with other bytes is refused too
    edited = shutil.copytree(a, tmp_path / "edited")
    record = json.loads((edited / "predictions.json").read_text())
    record["splits"]["validation"][0]["sha256"] = "0" * 64
    (edited / "predictions.json").write_text(json.dumps(record))
    with pytest.raises(DataError, match="1 with other bytes or label"):
        compare_runs([a, edited], page=False)
    res = runner.invoke(app, ["compare", str(a), str(other_split), "--no-page"])
    assert res.exit_code == 1 and "different validation images" in res.output


def test_compare_cli_json_without_tensorflow(runs, tmp_path):
    a, b, _ = runs
    code = ("import sys, json; from clf.cli import app; from typer.testing import CliRunner; "
            f"r = CliRunner().invoke(app, ['compare', {str(a)!r}, {str(b)!r}, '--json', '--output', "
            f"{str(tmp_path / 'out')!r}]); "
            "print(json.dumps({'code': r.exit_code, 'tf': 'tensorflow' in sys.modules, 'keras': 'keras' in sys.modules, "
            "'out': r.output}))")
    done = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                     timeout=120).stdout.strip().splitlines()[-1])
    assert done["code"] == 0 and not done["tf"] and not done["keras"], done
    record = json.loads(done["out"])
    assert record["format"] == "clf-compare/1" and record["output"] == str(tmp_path / "out")
    res = runner.invoke(app, ["compare", str(a), str(b), "--no-page"])
    assert res.exit_code == 0 and "McNemar p" in res.output and "recall per class" in res.output


def test_runs_with_one_folder_name_are_told_apart(runs, tmp_path):
    a = runs[0]
    twin = shutil.copytree(a, tmp_path / "elsewhere" / a.name, ignore=shutil.ignore_patterns("comparisons"))
    record = compare_runs([a, twin], page=False).record
    assert [r["name"] for r in record["runs"]] == [str(a), str(twin)]
    pair = record["pairs"][0]
    assert (pair["difference"], pair["right_only_a"], pair["right_only_b"], pair["p_value"]) == (0.0, 0, 0, 1.0)
