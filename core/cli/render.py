"""How the CLI shows engine events and evaluation reports: ``rich`` (progress bars), ``plain``
(a line per result, for logs and CI) or ``jsonl`` (an object per event), per ``--log-format``."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from clf.events import Observer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from clf.data.doctor import DoctorReport
    from rich.progress import Progress

LOG_FORMATS = ("auto", "rich", "plain", "jsonl")
LIST_CLASSES = 20  # class names and per-class counts listed in full up to this many


def esc(value: Any) -> str:
    """Outside text as rich text: markup escaped, non-UTF-8 bytes as ``\\xe9`` escapes."""
    from clf.data.filecheck import display_path

    return escape(display_path(str(value)))


def make_observer(console: Console, log_format: str = "auto", quiet: bool = False) -> Observer:
    fmt = resolved_format(console, log_format, quiet)
    if fmt == "quiet":
        return QuietObserver(console)
    if fmt == "jsonl":
        return JsonlObserver(sys.stdout)
    return RichProgressObserver(console) if fmt == "rich" else PlainObserver(console)


def progress_observer(console: Console | None = None) -> PlainObserver:
    """What ``clf.run(progress=True)`` shows, in a terminal or a notebook.

    A terminal, or Jupyter with ``ipywidgets`` (``pip install 'clf[notebook]'``): rich's
    progress bars, as ``clf run``. Otherwise plain lines, which every front end shows."""
    console = console or Console()
    bars = importlib.util.find_spec("ipywidgets") is not None if console.is_jupyter else console.is_terminal
    return RichProgressObserver(console) if bars else PlainObserver(console)


def resolved_format(console: Console, log_format: str, quiet: bool) -> str:
    if quiet:
        return "quiet"
    if log_format == "auto":
        return "rich" if console.is_terminal else "plain"
    return log_format


class QuietObserver(Observer):
    """Only notes (things the user must know, like random weights)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def note(self, text: str) -> None:
        self.console.print(f"[yellow]note:[/] {esc(text)}", highlight=False)


class PlainObserver(Observer):
    """One line per finished step: readable in a log file, no progress redraws."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def print(self, *args: Any, **kwargs: Any) -> None:
        self.console.print(*args, highlight=False, soft_wrap=True, **kwargs)

    def close(self) -> None:
        """Nothing to end: every line is already printed."""

    def note(self, text: str) -> None:
        self.print(f"[yellow]note:[/] {esc(text)}")

    def phase_end(self, phase: str, **info: Any) -> None:
        if phase == "doctor":
            self._doctor(info["report"])
        elif phase == "data":
            names = info["class_names"]
            if len(names) <= LIST_CLASSES:
                self.print(f"classes: {esc(', '.join(names))}")
            else:
                self.print(f"classes ({len(names)}): {esc(', '.join([*names[:5], '...', *names[-2:]]))}")
            for split, counts in info["counts"].items():
                if len(counts) <= LIST_CLASSES:
                    per = ", ".join(f"{k} {v}" for k, v in counts.items())
                else:  # one line, not two hundred names
                    per = f"{min(counts.values())} to {max(counts.values())} per class"
                total = info.get("images", {}).get(split, sum(counts.values()))
                self.print(f"  {esc(split)}: {total} images ({esc(per)})")
        elif phase == "build":
            self.print(f"backbone: {info['params']:,} parameters; backbone weights: {esc(info['weights'])}")
            if "strategy" in info:  # batch size semantics: --batch-size is the global batch
                self.print(f"strategy: {info['strategy']}, {info['replicas']} replica(s); batch "
                           f"{info['global_batch_size']} global, {info['per_replica_batch_size']} per "
                           f"replica; precision {info['precision']}")
        elif phase == "extract":
            done = sum(v["extracted"] for v in info["counts"].values())
            hit = sum(v["cached"] for v in info["counts"].values())
            where = f"; cache {esc(info['cache_dir'])}" if info.get("cache_dir") else "; disk cache off"
            runtime = f"; backbone in {info['runtime']}" if info.get("runtime") and done else ""
            shares = [v["by_worker"] for v in info["counts"].values() if "by_worker" in v]
            if shares and info.get("worker") is not None:  # a multi-worker run: the total and this worker's part
                mine = sum(s[info["worker"]] for s in shares)
                done_text = f"{done} images extracted by {len(shares[0])} workers ({mine} by this one)"
            else:
                done_text = f"{done} images extracted"
            self.print(f"features: {done_text}, {hit} from the cache in {info['seconds']:.1f}s{where}{runtime}")
        elif "seconds" in info:
            self.print(f"{esc(phase)} done in {info['seconds']:.1f}s"
                       + (f": {esc(info['summary'])}" if info.get("summary") else ""))
        if phase == "evaluate" and "metrics" in info:
            self.print(esc("  ".join(f"{k}: {v:.4f}" for k, v in info["metrics"].items())))
        elif phase == "verify":
            for line in info.get("lines", []):
                ok = line.startswith("ok ")
                self.print(("  [green]verified[/] " if ok else "  [bold red]FAILED[/] ") + esc(line.split(" ", 1)[1]))
        elif phase == "export":
            self.print(f"[green]saved[/] {esc(info['run_dir'])}")
            for name, files in info["artifacts"].items():
                self.print(f"  {esc(name)}: {esc(', '.join(Path(f).name for f in files))}")
        elif phase == "record" and "files" in info:
            self.print(f"  record: {esc(', '.join(Path(f).name for f in info['files']))}")

    def _doctor(self, report: DoctorReport) -> None:
        bad = report.quarantined
        if bad:
            # Where they are listed is said once quarantine.json is written (a dry run writes none).
            self.print(f"[yellow]quarantined {len(bad)} file(s)[/]:")
            for b in bad[:20]:
                self.print(f"  {esc(b.path)}: {esc(b.reason)}")
            if len(bad) > 20:
                self.print(f"  ... and {len(bad) - 20} more")
        if report.converted:  # by kind of change: 'grayscale: 2, alpha: 1'
            kinds = Counter(ch.split(":")[0].split(" (")[0] for c in report.converted for ch in c.changes)
            self.print(f"converted {len(report.converted)} file(s) for training "
                       f"({esc(', '.join(f'{k}: {n}' for k, n in kinds.most_common()))})")

    def epoch_end(self, phase: str, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        parts = " ".join(f"{k}={v:.4f}" for k, v in logs.items())
        self.print(f"{esc(phase)} epoch {epoch}/{epochs} {esc(parts)}")


class RichProgressObserver(PlainObserver):
    """Plain lines plus a live progress bar for every phase that announces a total."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.progress: Progress | None = None
        self.tasks: dict[str, Any] = {}

    def _progress(self) -> Progress:
        if self.progress is None:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
                                     transient=True)
            self.progress.start()
        return self.progress

    def phase_start(self, phase: str, total: int | None = None, unit: str = "") -> None:
        if total:
            self.tasks[phase] = self._progress().add_task(f"{phase} ({unit}s)" if unit else phase, total=total)

    def phase_advance(self, phase: str, amount: int = 1) -> None:
        if phase in self.tasks and self.progress is not None:
            self.progress.advance(self.tasks[phase], amount)

    def epoch_end(self, phase: str, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        super().epoch_end(phase, epoch, epochs, logs)
        # Training reports per epoch; a fine-tuning phase may not announce its own bar.
        for name in (phase, "train"):
            if name in self.tasks and self.progress is not None:
                self.progress.update(self.tasks[name], completed=epoch)
                break

    def phase_end(self, phase: str, **info: Any) -> None:
        task = self.tasks.pop(phase, None)
        if task is not None and self.progress is not None:
            self.progress.remove_task(task)
        if not self.tasks:
            self.close()
        super().phase_end(phase, **info)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class JsonlObserver(Observer):
    """One JSON object per event: ``{"event": ..., "time": ..., ...}``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def emit(self, event: str, **fields: Any) -> None:
        self.stream.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}, default=str) + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        self.emit("note", text=text)

    def phase_start(self, phase: str, total: int | None = None, unit: str = "") -> None:
        self.emit("phase_start", phase=phase, total=total, unit=unit)

    def phase_end(self, phase: str, **info: Any) -> None:
        info.pop("reports", None)  # the full reports come once, as the final "report" event
        self.emit("phase_end", phase=phase, **info)

    def epoch_end(self, phase: str, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        self.emit("epoch", phase=phase, epoch=epoch, epochs=epochs, **logs)


# Past these the tables are unreadable: top confusions and weakest classes instead (all in metrics.json).
MATRIX_CLASSES = 12
PER_CLASS_ROWS = 30
TOP_CONFUSIONS = 15


def report_tables(report: dict[str, Any], title: str) -> list[Any]:
    """Rich renderables for one evaluation report: summary, per class, confusion matrix."""
    if report.get("task") == "multilabel":
        return multilabel_tables(report, title)
    names = report["class_names"]
    summary = f"[bold]{esc(title)}[/]: {report['images']} images, accuracy [bold]{report['accuracy']:.4f}[/]"
    if "loss" in report:
        summary += f", loss {report['loss']:.4f}"
    summary += f", macro F1 {report['macro_f1']:.4f}"
    for k, v in report.get("top_k_accuracy", {}).items():
        summary += f", top-{k} {v:.4f}"

    shown, heading = names, "per class"
    if len(names) > PER_CLASS_ROWS:  # a stable sort: ties keep the output order
        shown = sorted(names, key=lambda name: report["per_class"][name]["f1"])[:PER_CLASS_ROWS]
        heading = f"per class: {PER_CLASS_ROWS} lowest F1 of {len(names)} (all: metrics.json)"
    per_class = Table(title=heading, title_justify="left")
    for col in ("class", "precision", "recall", "f1", "support"):
        per_class.add_column(col, justify="left" if col == "class" else "right")
    for name in shown:
        s = report["per_class"][name]
        per_class.add_row(esc(name), f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", str(s["support"]))

    out: list[Any] = [summary, per_class]
    if len(names) <= MATRIX_CLASSES:
        # The corner cell says it: rows are true classes, columns predicted.
        cm = Table(title="confusion matrix", title_justify="left")
        cm.add_column("true \\ predicted")
        for name in names:
            cm.add_column(esc(name), justify="right")
        for i, name in enumerate(names):
            cells = [f"[bold green]{v}[/]" if i == j else (f"[red]{v}[/]" if v else "0")
                     for j, v in enumerate(report["confusion_matrix"][i])]
            cm.add_row(esc(name), *cells)
        out += [cm, "most confused: " + ("; ".join(
            f"{esc(p['true'])} -> {esc(p['predicted'])} {p['count']} ({p['fraction_of_true']:.0%} of {esc(p['true'])})"
            for p in report.get("most_confused", [])) or "none (no errors)")]
        return out
    from clf.report.metrics import most_confused

    pairs = most_confused(report["confusion_matrix"], names, limit=TOP_CONFUSIONS)
    top = Table(title=f"top confusions of {len(names)} classes (matrix: confusion_matrix.csv)",
                title_justify="left")
    for col in ("true", "predicted as", "images", "of true"):
        top.add_column(col, justify="left" if col in ("true", "predicted as") else "right")
    for p in pairs:
        top.add_row(esc(p["true"]), esc(p["predicted"]), str(p["count"]), f"{p['fraction_of_true']:.0%}")
    out.append(top if pairs else "most confused: none (no errors)")
    return out


def multilabel_tables(report: dict[str, Any], title: str) -> list[Any]:
    """Rich renderables for a multi-label report (clf.report.multilabel): summary, per class."""
    names = report["class_names"]
    summary = (f"[bold]{esc(title)}[/]: {report['images']} images, mAP [bold]{report['map']:.4f}[/], "
               f"macro F1 {report['macro_f1']:.4f}, micro F1 {report['micro_f1']:.4f}, exact match "
               f"{report['exact_match']:.4f}, labels per image {report['label_cardinality']:.2f} "
               f"(predicted {report['predicted_cardinality']:.2f}), loss {report['loss']:.4f}")
    shown, heading = names, "per class, at its threshold"
    if len(names) > PER_CLASS_ROWS:
        shown = sorted(names, key=lambda name: report["per_class"][name]["f1"])[:PER_CLASS_ROWS]
        heading = f"per class: {PER_CLASS_ROWS} lowest F1 of {len(names)} (all: metrics.json)"
    table = Table(title=heading, title_justify="left")
    for col in ("class", "AP", "threshold", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name in shown:
        s = report["per_class"][name]
        ap = "-" if s["average_precision"] is None else f"{s['average_precision']:.3f}"
        table.add_row(esc(name), ap, f"{s['threshold']:.3f}", f"{s['precision']:.3f}", f"{s['recall']:.3f}",
                      f"{s['f1']:.3f}", str(s["support"]))
    return [summary, table]


def print_report(console: Console, report: dict[str, Any], title: str) -> None:
    for item in report_tables(report, title):
        console.print(item, highlight=False, soft_wrap=isinstance(item, str))


def interval_text(score: dict[str, Any]) -> str:
    """``0.8125 [0.7710, 0.8540]``: a mean and its interval."""
    return f"{score['mean']:.4f} [{score['low']:.4f}, {score['high']:.4f}]"


def cross_validation_tables(report: dict[str, Any]) -> list[Any]:
    """Rich renderables for a --folds report: the summary line and per-class recall."""
    heads = f"solved heads, L2 {report['l2']:.3g}" if report.get("heads") == "solved" else "heads trained by Keras fit"
    summary = (f"[bold]{report['folds']}-fold cross-validation[/] on {report['images']} images "
               f"({report['splits']}; {heads}): accuracy [bold]{interval_text(report['accuracy'])}[/], "
               f"macro F1 {interval_text(report['macro_f1'])} (mean [95% t interval over the folds]); one "
               f"train/validation split's accuracy would land in [{report['accuracy']['split_low']:.4f}, "
               f"{report['accuracy']['split_high']:.4f}] (95% prediction interval)")
    table = Table(title="per-class recall over the folds", title_justify="left")
    for col in ("class", "mean", "95% interval"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, score in report["per_class_recall"].items():
        table.add_row(esc(name), f"{score['mean']:.3f}", f"[{score['low']:.3f}, {score['high']:.3f}]")
    return [summary, table]


def leaderboard_table(board: list[dict[str, Any]], folds: int) -> Table:
    """The backbone sweep's leaderboard, best first."""
    table = Table(title=f"backbones by {folds}-fold accuracy (mean [95% t interval])", title_justify="left")
    for col in ("#", "backbone", "accuracy", "macro F1", "images", "seconds"):
        table.add_column(col, justify="left" if col == "backbone" else "right")
    for rank, entry in enumerate(board, 1):
        table.add_row(str(rank), esc(entry["backbone"]), interval_text(entry["accuracy"]),
                      interval_text(entry["macro_f1"]), str(entry["images"]), f"{entry['seconds']:.1f}")
    return table


def deployment_table(rows: list[dict[str, Any]]) -> Table:
    """deployment.json's rows (clf.artifacts.deployment), one column per artifact so a run's
    few artifacts fit 80 columns; docs/export.md says what each line is."""
    table = Table(title="deployment: held-out images, each artifact in its own runtime",
                  title_justify="left")
    table.add_column("")
    for r in rows:
        table.add_column(esc(r["file"]), justify="right")

    def line(name: str, cell: Any) -> None:
        table.add_row(name, *[cell(r) for r in rows])

    line("runtime", lambda r: esc(r["runtime"]))
    line("quantization", lambda r: esc((r.get("quantization") or "none")
                                       + (f" ({r['variant']})" if r.get("variant") else "")))
    line("images", lambda r: str(r["images"]))
    line("accuracy", lambda r: f"{r['accuracy']:.1%}")
    line("vs Keras", lambda r: f"{100 * r['difference']:+.1f} pt")
    line("McNemar p", lambda r: f"{r['p_value']:.3g}")
    line("top-1 agreement", lambda r: f"{r['top1_agreement']:.1%}")
    line("max |diff|", lambda r: f"{r['max_abs_diff']:.1e}")
    line("size", lambda r: f"{r['size_bytes'] / 2**20:.2f} MiB")
    line("batch-1 latency", lambda r: "-" if r.get("latency_ms") is None else f"{r['latency_ms']:.1f} ms")
    line("batch-32", lambda r: "-" if r.get("throughput") is None else f"{r['throughput']:.0f} img/s")
    return table


def print_deployment(console: Console, run_dir: Any, log_format: str, quiet: bool) -> None:
    """The run folder's deployment table (nothing without one; one JSON event with jsonl)."""
    from clf.artifacts.deployment import read_table

    rows = read_table(Path(run_dir))
    fmt = resolved_format(console, log_format, quiet)
    if not rows or fmt == "quiet":
        return
    if fmt == "jsonl":
        print(json.dumps({"event": "deployment", "rows": rows}), flush=True)
    else:
        console.print(deployment_table(rows))
