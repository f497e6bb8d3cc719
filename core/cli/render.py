"""How the CLI shows engine events and evaluation reports.

Three renderers of the same ``Observer`` events:

- ``rich``: progress bars (extraction, training, evaluation, prediction) when stdout is a
  terminal; finished epochs and results are printed above the bars.
- ``plain``: one line per epoch and per result, no carriage returns, for log files and CI.
- ``jsonl``: one JSON object per event, for machines.

``--log-format auto`` (the default) picks ``rich`` on a terminal and ``plain`` otherwise;
``--quiet`` shows only notes and errors (and the final line of the command).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from clf.events import Observer
from rich.console import Console
from rich.table import Table

LOG_FORMATS = ("auto", "rich", "plain", "jsonl")


def make_observer(console: Console, log_format: str = "auto", quiet: bool = False,
                  stream: TextIO | None = None) -> Observer:
    if quiet:
        return QuietObserver(console)
    if log_format == "jsonl":
        return JsonlObserver(stream or sys.stdout)
    if log_format == "rich" or (log_format == "auto" and console.is_terminal):
        return RichProgressObserver(console)
    return PlainObserver(console)


def resolved_format(console: Console, log_format: str, quiet: bool) -> str:
    if quiet:
        return "quiet"
    if log_format == "auto":
        return "rich" if console.is_terminal else "plain"
    return log_format


class QuietObserver(Observer):
    """Only notes (things the user must know, like random weights)."""

    def __init__(self, console: Console):
        self.console = console

    def note(self, text):
        self.console.print(f"[yellow]note:[/] {text}", highlight=False)


class PlainObserver(Observer):
    """One line per finished step: readable in a log file, no progress redraws."""

    def __init__(self, console: Console):
        self.console = console

    def print(self, *args, **kwargs):
        self.console.print(*args, highlight=False, soft_wrap=True, **kwargs)

    def note(self, text):
        self.print(f"[yellow]note:[/] {text}")

    def phase_end(self, phase, **info):
        if phase == "doctor":
            self._doctor(info["report"])
        elif phase == "data":
            self.print(f"classes: {', '.join(info['class_names'])}")
            for split, counts in info["counts"].items():
                self.print(f"  {split}: {sum(counts.values())} images "
                           f"({', '.join(f'{k} {v}' for k, v in counts.items())})")
        elif phase == "build":
            self.print(f"backbone: {info['params']:,} parameters; backbone weights: {info['weights']}")
            if "strategy" in info:  # batch size semantics: --batch-size is the global batch
                self.print(f"strategy: {info['strategy']}, {info['replicas']} replica(s); batch "
                           f"{info['global_batch_size']} global, {info['per_replica_batch_size']} per "
                           f"replica; precision {info['precision']}")
        elif phase == "extract":
            done = sum(v["extracted"] for v in info["counts"].values())
            hit = sum(v["cached"] for v in info["counts"].values())
            where = f"; cache {info['cache_dir']}" if info.get("cache_dir") else "; disk cache off"
            self.print(f"features: {done} images extracted, {hit} from the cache in "
                       f"{info['seconds']:.1f}s{where}")
        elif "seconds" in info and phase not in ("data",):
            self.print(f"{phase} done in {info['seconds']:.1f}s" + (f": {info['summary']}" if info.get("summary") else ""))
        if phase == "evaluate" and "metrics" in info:
            self.print("  ".join(f"{k}: {v:.4f}" for k, v in info["metrics"].items()))
        elif phase == "verify":
            for line in info.get("lines", []):
                ok = line.startswith("ok ")
                self.print(("  [green]verified[/] " if ok else "  [bold red]FAILED[/] ") + line.split(" ", 1)[1])
        elif phase == "export":
            self.print(f"[green]saved[/] {info['run_dir']}")
            for name, files in info["artifacts"].items():
                self.print(f"  {name}: {', '.join(Path(f).name for f in files)}")
        elif phase == "record" and "files" in info:
            self.print(f"  record: {', '.join(Path(f).name for f in info['files'])}")

    def _doctor(self, report):
        bad = report.quarantined
        if bad:
            self.print(f"[yellow]quarantined {len(bad)} file(s)[/] (listed in quarantine.json in the run folder):")
            for b in bad[:20]:
                self.print(f"  {b.path}: {b.reason}")
            if len(bad) > 20:
                self.print(f"  ... and {len(bad) - 20} more")
        if report.converted:
            self.print(f"converted {len(report.converted)} file(s) for training "
                       f"({summarise_changes(report.converted)})")

    def epoch_end(self, phase, epoch, epochs, logs):
        parts = " ".join(f"{k}={v:.4f}" for k, v in logs.items())
        self.print(f"{phase} epoch {epoch}/{epochs} {parts}")


def summarise_changes(conversions) -> str:
    """'grayscale: 2, alpha: 1' from the doctor's conversion records."""
    from collections import Counter

    kinds = Counter(ch.split(":")[0].split(" (")[0] for c in conversions for ch in c.changes)
    return ", ".join(f"{k}: {n}" for k, n in kinds.most_common())


class RichProgressObserver(PlainObserver):
    """Plain lines plus a live progress bar for every phase that announces a total."""

    def __init__(self, console: Console):
        super().__init__(console)
        self.progress = None
        self.tasks: dict[str, Any] = {}

    def _progress(self):
        if self.progress is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
                                     transient=True)
            self.progress.start()
        return self.progress

    def print(self, *args, **kwargs):
        # Through the live display's console, so lines appear above the bars.
        (self.progress.console if self.progress else self.console).print(*args, highlight=False, soft_wrap=True, **kwargs)

    def phase_start(self, phase, total=None, unit=""):
        if total:
            self.tasks[phase] = self._progress().add_task(f"{phase} ({unit}s)" if unit else phase, total=total)

    def phase_advance(self, phase, amount=1):
        if phase in self.tasks:
            self.progress.advance(self.tasks[phase], amount)

    def epoch_end(self, phase, epoch, epochs, logs):
        super().epoch_end(phase, epoch, epochs, logs)
        # Training reports per epoch; a fine-tuning phase may not announce its own bar.
        for name in (phase, "train"):
            if name in self.tasks:
                self.progress.update(self.tasks[name], completed=epoch)
                break

    def phase_end(self, phase, **info):
        task = self.tasks.pop(phase, None)
        if task is not None:
            self.progress.remove_task(task)
        if self.progress is not None and not self.tasks:
            self.progress.stop()
            self.progress = None
        super().phase_end(phase, **info)

    def close(self):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class JsonlObserver(Observer):
    """One JSON object per event: ``{"event": ..., "time": ..., ...}``."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def emit(self, event: str, **fields: Any) -> None:
        self.stream.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}, default=str) + "\n")
        self.stream.flush()

    def note(self, text):
        self.emit("note", text=text)

    def phase_start(self, phase, total=None, unit=""):
        self.emit("phase_start", phase=phase, total=total, unit=unit)

    def phase_end(self, phase, **info):
        info.pop("reports", None)  # the full reports come once, as the final "report" event
        self.emit("phase_end", phase=phase, **info)

    def epoch_end(self, phase, epoch, epochs, logs):
        self.emit("epoch", phase=phase, epoch=epoch, epochs=epochs, **logs)


def report_tables(report: dict[str, Any], title: str) -> list[Any]:
    """Rich renderables for one evaluation report: summary, per class, confusion matrix."""
    names = report["class_names"]
    summary = f"[bold]{title}[/]: {report['images']} images, accuracy [bold]{report['accuracy']:.4f}[/]"
    if "loss" in report:
        summary += f", loss {report['loss']:.4f}"
    summary += f", macro F1 {report['macro_f1']:.4f}"
    for k, v in report.get("top_k_accuracy", {}).items():
        summary += f", top-{k} {v:.4f}"

    per_class = Table(title="per class", title_justify="left")
    for col in ("class", "precision", "recall", "f1", "support"):
        per_class.add_column(col, justify="left" if col == "class" else "right")
    for name in names:
        s = report["per_class"][name]
        per_class.add_row(name, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", str(s["support"]))

    # The corner cell says it: rows are true classes, columns predicted.
    cm = Table(title="confusion matrix", title_justify="left")
    cm.add_column("true \\ predicted")
    for name in names:
        cm.add_column(name, justify="right")
    for i, name in enumerate(names):
        cells = [f"[bold green]{v}[/]" if i == j else (f"[red]{v}[/]" if v else "0")
                 for j, v in enumerate(report["confusion_matrix"][i])]
        cm.add_row(name, *cells)

    out: list[Any] = [summary, per_class, cm]
    pairs = report.get("most_confused", [])
    if pairs:
        out.append("most confused: " + "; ".join(
            f"{p['true']} -> {p['predicted']} {p['count']} ({p['fraction_of_true']:.0%} of {p['true']})" for p in pairs))
    else:
        out.append("most confused: none (no errors)")
    return out


def print_report(console: Console, report: dict[str, Any], title: str) -> None:
    for item in report_tables(report, title):
        console.print(item, highlight=False, soft_wrap=isinstance(item, str))
