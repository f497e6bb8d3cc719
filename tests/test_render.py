"""The CLI's renderers of engine events: rich bars on a terminal, plain lines, jsonl, quiet."""

import io
import json

from rich.console import Console

from clf.report.metrics import evaluation_report
from clf.cli.render import (JsonlObserver, PlainObserver, QuietObserver, RichProgressObserver, make_observer,
                        report_tables)


def feed(observer, epochs=3):
    observer.note("random weights")
    observer.phase_start("train", total=epochs, unit="epoch")
    for e in range(1, epochs + 1):
        observer.epoch_end("train", e, epochs, {"loss": 1 / e, "accuracy": 0.5})
        observer.phase_advance("train")
    observer.phase_end("train", seconds=2.5)
    observer.phase_start("evaluate", total=4, unit="image")
    observer.phase_advance("evaluate", 4)
    observer.phase_end("evaluate", metrics={"validation_accuracy": 0.75}, reports={"validation": {}})


def console(terminal):
    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, width=100), buf


def test_auto_picks_rich_on_a_terminal_and_plain_otherwise():
    assert type(make_observer(console(True)[0])) is RichProgressObserver
    assert type(make_observer(console(False)[0])) is PlainObserver
    assert type(make_observer(console(True)[0], "plain")) is PlainObserver
    assert type(make_observer(console(False)[0], "jsonl")) is JsonlObserver
    assert type(make_observer(console(True)[0], "jsonl", quiet=True)) is QuietObserver


def test_plain_is_one_line_per_epoch_without_carriage_returns():
    con, buf = console(False)
    feed(PlainObserver(con))
    text = buf.getvalue()
    assert "\r" not in text and "\x1b" not in text
    epochs = [line for line in text.splitlines() if line.startswith("train epoch")]
    assert epochs == ["train epoch 1/3 loss=1.0000 accuracy=0.5000", "train epoch 2/3 loss=0.5000 accuracy=0.5000",
                      "train epoch 3/3 loss=0.3333 accuracy=0.5000"]
    assert "validation_accuracy: 0.7500" in text and "train done in 2.5s" in text


def test_rich_draws_progress_bars_on_a_terminal():
    con, buf = console(True)
    obs = RichProgressObserver(con)
    feed(obs)
    obs.close()
    text = buf.getvalue()
    assert "train (epochs)" in text and "3/3" in text  # the bar's description and M/N column
    assert "train epoch 2/3" in text and obs.progress is None


def test_jsonl_is_one_json_object_per_event():
    stream = io.StringIO()
    feed(JsonlObserver(stream))
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["note", "phase_start", "epoch", "epoch", "epoch", "phase_end",
                                            "phase_start", "phase_end"]
    assert events[3] == {"event": "epoch", "time": events[3]["time"], "phase": "train", "epoch": 2, "epochs": 3,
                         "loss": 0.5, "accuracy": 0.5}
    assert "reports" not in events[-1] and events[-1]["metrics"] == {"validation_accuracy": 0.75}


def test_quiet_shows_only_notes():
    con, buf = console(False)
    feed(QuietObserver(con))
    assert buf.getvalue().strip() == "note: random weights"


def test_report_tables_render_scores_and_matrix():
    report = evaluation_report([0, 1, 1], [[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]], ["ant", "bee"], loss=0.4)
    con, buf = console(False)
    for item in report_tables(report, "validation"):
        con.print(item)
    text = buf.getvalue()
    assert "validation: 3 images, accuracy 0.6667, loss 0.4000" in text
    assert "confusion matrix" in text and "true \\ predicted" in text
    assert "most confused: bee -> ant 1 (50% of bee)" in text


def test_a_worker_of_a_multi_worker_run_says_its_part_of_the_extraction():
    con, buf = console(False)
    observer = PlainObserver(con)
    counts = {"train": {"extracted": 18, "cached": 6, "by_worker": [9, 9]},
              "validation": {"extracted": 4, "cached": 0, "by_worker": [3, 1]}}
    observer.phase_end("extract", seconds=1.0, counts=counts, cache_dir=None, runtime="tensorflow", worker=1)
    observer.phase_end("extract", seconds=1.0, counts={"train": {"extracted": 5, "cached": 1}}, cache_dir=None,
                       runtime="tensorflow", worker=None)
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("features: 22 images extracted by 2 workers (10 by this one), 6 from the cache")
    assert lines[1].startswith("features: 5 images extracted, 1 from the cache")
