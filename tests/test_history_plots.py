"""history.csv and the PNG plots from observer events: no TensorFlow needed."""

import csv
import io

import pytest
from PIL import Image

from clf.report.history import RunRecorder, TeeObserver, history_csv
from clf.events import RecordingObserver
from clf.report.metrics import evaluation_report
from clf.report.plots import plot_confusion_matrix, plot_training_curves


def assert_png(path, min_bytes=10_000, min_side=300):
    """A real PNG image, not a blank stub: decodes, has a sensible size, many colours."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size >= min_bytes
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert min(img.size) >= min_side
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 20


def two_phase_recorder():
    rec = RunRecorder()
    inner = RecordingObserver()
    tee = TeeObserver(rec, inner)
    tee.phase_start("train", total=3, unit="epoch")
    for e in range(1, 4):
        tee.epoch_end("train", e, 3, {"loss": 1.0 / e, "accuracy": 0.5 + e / 10, "val_loss": 1.1 / e, "val_accuracy": 0.5})
    tee.phase_end("train", seconds=1.0)
    tee.phase_start("fine_tune", total=2, unit="epoch")
    for e in range(1, 3):
        tee.epoch_end("fine_tune", e, 2, {"loss": 0.2 / e, "accuracy": 0.9, "val_loss": 0.3, "val_accuracy": 0.85})
    tee.phase_end("fine_tune")
    return rec, inner


def test_recorder_keeps_both_phases_and_forwards_events():
    rec, inner = two_phase_recorder()
    assert [(r.phase, r.epoch) for r in rec.epochs] == [("train", 1), ("train", 2), ("train", 3),
                                                        ("fine_tune", 1), ("fine_tune", 2)]
    assert set(rec.seconds) == {"train", "fine_tune"} and all(v >= 0 for v in rec.seconds.values())
    assert [r.logs["loss"] for r in rec.epochs if r.phase == "fine_tune"] == [0.2, 0.1]
    assert sum(1 for e in inner.events if e[0] == "epoch_end") == 5


def test_history_csv_has_one_row_per_epoch_of_every_phase():
    rec, _ = two_phase_recorder()
    rows = list(csv.DictReader(io.StringIO(history_csv(rec.epochs))))
    assert [r["phase"] for r in rows] == ["train"] * 3 + ["fine_tune"] * 2
    assert float(rows[1]["loss"]) == 0.5 and float(rows[4]["val_accuracy"]) == 0.85
    assert list(rows[0]) == ["phase", "epoch", "loss", "accuracy", "val_loss", "val_accuracy"]


def test_training_curves_and_confusion_matrix_are_real_pngs(tmp_path):
    rec, _ = two_phase_recorder()
    assert_png(plot_training_curves(rec.epochs, tmp_path / "curves.png"))
    report = evaluation_report([0, 1, 2, 2], [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.6, 0.2, 0.2]],
                               ["ant", "bee", "cat"])
    assert_png(plot_confusion_matrix(report, tmp_path / "cm.png"))
    assert not list(tmp_path.glob(".tmp-*"))  # written under a temporary name, then renamed
