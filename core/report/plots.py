"""PNG plots of a run: training curves, the confusion matrix and the known score's histogram
(matplotlib's Agg backend: headless, never a window)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from clf.files import atomic_path
from clf.report.history import EpochRecord
from clf.report.metrics import most_confused


@contextmanager
def _figure(path: Path, *args: Any, **kwargs: Any) -> Iterator[tuple[Any, Any]]:
    """``plt.subplots(*args, **kwargs)``, written to ``path`` as PNG at the end; always closed."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(*args, **kwargs)
    try:
        yield fig, axes
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)


def plot_training_curves(records: Sequence[EpochRecord], path: Path) -> Path:
    """Loss and accuracy per epoch, every phase on one x axis, a dashed line where each later phase begins."""
    with _figure(path, 1, 2, figsize=(10, 4)) as (fig, axes):
        for ax, metric in zip(axes, ("loss", "accuracy")):
            for key, label, style in ((metric, "train", "-o"), (f"val_{metric}", "validation", "-s")):
                points = [(x, r.logs[key]) for x, r in enumerate(records, 1) if key in r.logs]
                if points:  # (epoch number, value) where that epoch logged it
                    ax.plot(*zip(*points), style, label=label, markersize=3)
            for i in range(1, len(records)):
                if records[i].phase != records[i - 1].phase:
                    ax.axvline(i + 0.5, color="grey", linestyle="--", linewidth=1)
                    ax.text(i + 0.6, ax.get_ylim()[1], records[i].phase, va="top", fontsize=8, color="grey")
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.ticklabel_format(axis="y", useOffset=False)
            ax.set_xlabel("epoch")
            ax.set_ylabel(metric)
            ax.set_title(metric)
            ax.grid(alpha=0.3)
            if ax.has_data():
                ax.legend()
        phases = list(dict.fromkeys(r.phase for r in records))
        fig.suptitle(f"training curves ({', '.join(phases) or 'no epochs'})")
    return Path(path)


# Past this many classes, cell labels cost matplotlib too much: row fractions, with the top confusions.
ANNOTATE_CLASSES = 30
TICK_CLASSES = 60  # class names on the axes up to this many
TOP_CONFUSIONS = 20


def plot_confusion_matrix(report: dict[str, Any], path: Path, title: str = "confusion matrix") -> Path:
    """A heat map of ``report['confusion_matrix']`` (cell counts up to ``ANNOTATE_CLASSES``)."""
    names = report["class_names"]
    cm = np.asarray(report["confusion_matrix"])
    n = len(names)
    heading = f"{title} (accuracy {report['accuracy']:.3f}, {report['images']} images, {n} classes)"
    if n > ANNOTATE_CLASSES:
        return _plot_large(cm, names, path, heading)
    size = max(4.0, 0.6 * n + 2)
    with _figure(path, figsize=(size + 1, size)) as (fig, ax):
        image = ax.imshow(cm, cmap="Blues")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xticks(range(n), labels=names, rotation=45, ha="right")
        ax.set_yticks(range(n), labels=names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(heading)
        threshold = cm.max() / 2 if cm.size else 0
        for i, j in np.ndindex(n, n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > threshold else "black")
    return Path(path)


def _plot_large(cm: np.ndarray, names: Sequence[str], path: Path, heading: str) -> Path:
    n = len(names)
    support = cm.sum(axis=1, keepdims=True)
    fractions = np.divide(cm, support, out=np.zeros(cm.shape, float), where=support > 0)
    pairs = most_confused(cm, names, limit=TOP_CONFUSIONS)
    layout = {"width_ratios": [1, 0.8], "wspace": 0.6}
    with _figure(path, 1, 2, figsize=(17, 8), gridspec_kw=layout) as (fig, (ax, bars)):
        image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
        if n <= TICK_CLASSES:
            ax.set_xticks(range(n), labels=names, rotation=90, fontsize=6)
            ax.set_yticks(range(n), labels=names, fontsize=6)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_xlabel(f"predicted ({n} classes, in class order)")
        ax.set_ylabel("true")
        ax.set_title("row-normalised matrix (counts in confusion_matrix.csv)", fontsize=9)
        if pairs:
            labels = [f"{p['true']} -> {p['predicted']}" for p in pairs][::-1]
            bars.barh(range(len(pairs)), [p["count"] for p in pairs][::-1], color="tab:red")
            shortened = [t if len(t) <= 48 else t[:45] + "..." for t in labels]
            bars.set_yticks(range(len(pairs)), labels=shortened, fontsize=7)
            from matplotlib.ticker import MaxNLocator

            bars.xaxis.set_major_locator(MaxNLocator(integer=True))
            bars.set_xlabel("images")
            bars.set_title(f"top {len(pairs)} confusions (true -> predicted)", fontsize=9)
        else:
            bars.axis("off")
            bars.text(0.5, 0.5, "no confusions", ha="center", va="center")
        fig.suptitle(heading)
    return Path(path)


def plot_unknown_scores(training: np.ndarray, validation: np.ndarray | None, threshold: float, path: Path, *,
                        kind: str, accept_known: float) -> Path:
    """Histograms of the raw known score (``clf.train.unknown``): the training images' out-of-fold
    scores, which set the threshold, and the validation images' scores, with the threshold as a
    vertical line (below it a photo is "unknown")."""
    training = np.asarray(training, float)
    groups = [(training, f"training images, out of fold ({len(training)})", "tab:blue")]
    if validation is not None and len(validation):
        groups.append((np.asarray(validation, float), f"validation images ({len(validation)})", "tab:orange"))
    every = np.concatenate([g[0] for g in groups] + [np.array([threshold])])
    edges = np.histogram_bin_edges(every, bins=min(50, max(10, len(every) // 5)))
    with _figure(path, figsize=(8, 4.5)) as (fig, ax):
        for values, label, color in groups:
            # Densities: the two sets differ in size, their shapes are what compare. One outline
            # per set (stairs), not a rectangle per bin: far quicker to draw.
            ax.stairs(np.histogram(values, bins=edges, density=True)[0], edges, fill=True, alpha=0.5, color=color,
                      label=label)
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2,
                   label=f"threshold {threshold:.4g} (accepts {accept_known:.0%} of training, out of fold)")
        ax.set_xlabel(f"raw {kind} score (higher: more like the training images)")
        ax.set_ylabel("density")
        ax.set_title(f"known-photo score ({kind}): below the threshold a photo is 'unknown'")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return Path(path)


def plot_leaderboard(board: Sequence[dict[str, Any]], path: Path, folds: int) -> Path:
    """Each backbone's mean fold accuracy with its 95% interval, best on top."""
    names = [entry["backbone"] for entry in board][::-1]
    means = np.array([entry["accuracy"]["mean"] for entry in board][::-1])
    low = means - np.array([entry["accuracy"]["low"] for entry in board][::-1])
    high = np.array([entry["accuracy"]["high"] for entry in board][::-1]) - means
    with _figure(path, figsize=(7, 1.2 + 0.5 * len(names))) as (fig, ax):
        ax.errorbar(means, range(len(names)), xerr=[low, high], fmt="o", capsize=4, color="tab:blue")
        ax.set_yticks(range(len(names)), labels=names)
        ax.set_xlabel(f"accuracy ({folds}-fold mean, 95% t interval)")
        ax.grid(alpha=0.3, axis="x")
        ax.set_title("backbones by cross-validated accuracy")
    return Path(path)


def plot_pr_curves(targets: np.ndarray, scores: np.ndarray, class_names: Sequence[str], report: dict[str, Any],
                   path: Path, title: str = "precision-recall") -> Path:
    """Multi-label: each class's precision-recall curve (its AP in the legend), a dot at the
    operating point of its threshold (``report``: clf.report.multilabel's)."""
    from clf.report.multilabel import precision_recall_curve

    y, s = np.asarray(targets), np.asarray(scores)
    shown = list(range(len(class_names)))[:20]  # a legend of more is unreadable; metrics.json has all
    with _figure(path, figsize=(7, 6)) as (fig, ax):
        for c in shown:
            stats = report["per_class"][class_names[c]]
            if not stats["support"]:
                continue
            precision, recall, _ = precision_recall_curve(y[:, c], s[:, c])
            line, = ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="post", linewidth=1.2,
                            label=f"{class_names[c]} (AP {stats['average_precision']:.3f})")
            ax.plot([stats["recall"]], [stats["precision"]], "o", color=line.get_color(), markersize=5)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"{title}: mAP {report['map']:.3f} (dots: each class's threshold)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    return Path(path)
