"""Checkpoint every epoch into ``RUN/checkpoint/<phase>-epoch-NNNN/``, atomically (a kill never
leaves half a checkpoint), and resume from the last sound one: ``state.json`` records each
array file's sha256 and the previous checkpoint is kept, so a damaged latest one is passed
over with a note.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from clf.errors import DataError, UsageError
from clf.events import Observer
from clf.files import atomic_path, file_hash, sha256_path, write_json
from clf.report.runrecord import dataset_fingerprint

CHECKPOINT_DIR = "checkpoint"
FORMAT = "clf-checkpoint/1"
ARRAY_FILES = ("weights.npz", "optimizer.npz", "rng.npz")
KEEP = 2  # the latest checkpoint of a phase and the one before it


@dataclass
class Checkpoint:
    path: Path
    phase: str
    epoch: int  # completed epochs
    epochs: int
    history: dict[str, list[float]]
    config: dict[str, Any]
    note: str | None = None  # set when a newer, damaged checkpoint was passed over
    data: dict[str, Any] | None = None  # data_record of the data trained on; None: an older checkpoint


def save(run_dir: Path, model: Any, *, phase: str, epoch: int, epochs: int,
         history: dict[str, list[float]], config: dict[str, Any], best: Any = None,
         data: dict[str, Any] | None = None) -> Path:
    """Write one checkpoint folder atomically and drop the older ones of the same phase.
    ``best``: ``(epoch, val_loss, weight values)`` of the best epoch so far, kept beside;
    ``data``: the ``data_record`` of the data trained on, which a resume compares."""
    import numpy as np

    root = Path(run_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{phase}-epoch-{epoch:04d}"
    with atomic_path(final) as tmp:
        tmp.mkdir()
        optimizer = getattr(model, "optimizer", None)
        opt_vars = list(optimizer.variables) if optimizer is not None and optimizer.built else []
        for name, variables in zip(ARRAY_FILES, (model.weights, opt_vars, _rng_state(model))):
            np.savez(tmp / name, *[np.asarray(v.numpy()) for v in variables])
        state = {"format": FORMAT, "phase": phase, "epoch": epoch, "epochs": epochs,
                 "history": history, "config": config}
        if data is not None:
            state["data"] = data
        arrays: tuple[str, ...] = ARRAY_FILES
        if best is not None and best[2] is not None:
            np.savez(tmp / "best.npz", *best[2])
            state["best"] = {"epoch": best[0], "val_loss": best[1]}
            arrays += ("best.npz",)
        state["sha256"] = {name: file_hash(tmp / name) for name in arrays}
        write_json(tmp / "state.json", state)
    # Also drop temp folders of killed runs.
    kept = sorted((d for d in root.glob(f"{phase}-epoch-*") if d.is_dir()), key=lambda d: d.name)[-KEEP:]
    for old in root.iterdir():
        if old.is_dir() and old not in kept and (old.name.startswith(f"{phase}-epoch-")
                                                 or (old.name.startswith(".tmp-") and f"-{phase}-epoch-" in old.name)):
            shutil.rmtree(old, ignore_errors=True)
    return final


def _read(folder: Path) -> tuple[Checkpoint | None, str]:
    """``(checkpoint, "")`` for a sound checkpoint folder, else ``(None, why not)``."""
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            return None, "state.json is not a clf checkpoint record"
        ckpt = Checkpoint(folder, state["phase"], int(state["epoch"]), int(state["epochs"]),
                          state.get("history", {}), state.get("config", {}),
                          data=state["data"] if isinstance(state.get("data"), dict) else None)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"state.json unreadable ({type(exc).__name__})"
    problem = _array_problem(folder, state.get("sha256"))
    return (None, problem) if problem else (ckpt, "")


def _array_problem(folder: Path, digests: Any) -> str:
    """Why the array files cannot be restored ('' when they can)."""
    import zipfile

    for name in ARRAY_FILES:
        path = folder / name
        if not path.is_file():
            if name == "weights.npz" or isinstance(digests, dict):
                return f"{name} is missing"
            continue
        if isinstance(digests, dict):  # recorded at save: any change is damage
            if digests.get(name) != sha256_path(path):
                return f"{name} does not match the sha256 recorded when it was saved"
            continue
        try:  # no digests recorded (older checkpoint): test the zip's CRCs
            with zipfile.ZipFile(path) as z:
                if z.testzip() is not None:
                    return f"{name} fails its CRC check"
        except (OSError, zipfile.BadZipFile) as exc:
            return f"{name} is not a readable .npz ({exc})"
    return ""


def latest(run_dir: str | Path, phase: str | None = None) -> Checkpoint | None:
    """The most advanced sound checkpoint in a run folder (of ``phase`` if given), with a
    ``note`` when a more advanced, damaged one was passed over."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return None
    found, damaged = [], []
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name.startswith("."):
            continue
        ckpt, why = _read(d)
        if ckpt is not None and (phase is None or ckpt.phase == phase):
            found.append(ckpt)
        elif ckpt is None and (phase is None or d.name.startswith(f"{phase}-epoch-")) and (d / "state.json").exists():
            damaged.append((d, why))
    if not found:
        return None
    best = max(found, key=lambda c: c.epoch)
    passed_over = [(d, why) for d, why in damaged
                   if d.name.startswith(f"{best.phase}-epoch-") and d.name > best.path.name]
    if passed_over:
        d, why = passed_over[-1]
        best.note = (f"Checkpoint {d.name} is damaged ({why}); resuming from the previous one, "
                     f"{best.path.name} (epoch {best.epoch}).")
    return best


def require(run_dir: str | Path) -> Checkpoint:
    """The checkpoint to resume from, or a clear error."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(
            f"--resume {str(run_dir)!r}: no such run folder; expected the folder of an "
            f"interrupted 'clf run'. Check the path (run folders are under runs/ by default)."
        )
    ckpt = latest(run_dir)
    if ckpt is None:
        damaged = [f"{d.name}: {why}" for d in sorted((run_dir / CHECKPOINT_DIR).glob("*-epoch-*"))
                   if (why := _read(d)[1])]
        raise UsageError(
            f"--resume {str(run_dir)!r}: the folder has no complete checkpoint "
            f"({CHECKPOINT_DIR}/<phase>-epoch-NNNN with state.json"
            f"{'; damaged: ' + '; '.join(damaged) if damaged else ''}); expected a run that "
            f"finished at least one epoch. Start a new run instead."
        )
    return ckpt


def data_record(bundle: Any, data_root: str) -> dict[str, Any]:
    """What a checkpoint records of its data: class names, images per split and class, and
    the run record's dataset fingerprint."""
    return {"class_names": list(bundle.class_names),
            "counts": {name: bundle.counts(name) for name in bundle.splits},
            "sha256": dataset_fingerprint(bundle.splits, data_root)["sha256"]}


def data_changes(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between two ``data_record``s, in words ([] when nothing does)."""
    before, after = list(recorded.get("class_names", [])), list(now["class_names"])
    changes = [f"class {c!r} added" for c in after if c not in before]
    changes += [f"class {c!r} removed" for c in before if c not in after]
    old_counts, new_counts = recorded.get("counts", {}), now["counts"]
    for split in sorted(set(old_counts) | set(new_counts)):
        was, now_split = old_counts.get(split, {}), new_counts.get(split, {})
        for cls in sorted(set(was) & set(now_split)):
            if was[cls] != now_split[cls]:
                changes.append(f"{split}/{cls}: {was[cls]} -> {now_split[cls]} images")
    if not changes and recorded.get("sha256") != now["sha256"]:
        changes.append("as many images per class, but some files differ in name or content")
    return changes


def check_data(ckpt: Checkpoint, bundle: Any, data_root: str, run_dir: Path, observer: Observer) -> None:
    """Refuse to resume on other data than the checkpoint's epochs were trained on."""
    if ckpt.data is None:
        observer.note(f"Checkpoint {ckpt.path.name} records no fingerprint of its data (saved by an older "
                      f"clf): clf cannot check that {data_root} is unchanged since.")
        return
    changes = data_changes(ckpt.data, data_record(bundle, data_root))
    if changes:
        shown = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")
        raise DataError(
            f"--resume {str(run_dir)!r}: the data in {data_root!r} changed since epoch {ckpt.epoch} was "
            f"saved ({shown}); resuming would continue training on other data than the epochs so far. "
            f"Expected the same files. Restore them, or start a new run on the data as it is now: "
            f"clf run --config {str(Path(run_dir) / 'config.toml')!r} --output NEW_RUN_FOLDER."
        )


def best_so_far(ckpt: Checkpoint | None) -> tuple[int, float, list[Any]] | None:
    """``(epoch, val_loss, weight values)`` of the best epoch a checkpoint kept, or None."""
    if ckpt is None or not (ckpt.path / "best.npz").is_file():
        return None
    try:
        saved = json.loads((ckpt.path / "state.json").read_text(encoding="utf-8"))
        state, digest = saved["best"], saved.get("sha256", {}).get("best.npz")
        if digest is not None and digest != sha256_path(ckpt.path / "best.npz"):
            return None  # damaged: training goes on from the last epoch's weights
        return int(state["epoch"]), float(state["val_loss"]), _arrays(ckpt.path / "best.npz")
    except (OSError, ValueError, KeyError):
        return None


def restore(model: Any, ckpt: Checkpoint) -> None:
    """Load weights and optimizer state saved by ``save`` into an identically built model."""
    try:
        values = _arrays(ckpt.path / "weights.npz")
    except Exception as exc:  # BadZipFile, a bad CRC: damaged after latest() looked at it
        raise UsageError(
            f"Checkpoint {str(ckpt.path)!r} cannot be read ({type(exc).__name__}: {exc}); expected "
            f"the weights saved at epoch {ckpt.epoch}. Delete that folder to resume from the one "
            f"before it, or start a new run."
        ) from None
    if len(values) != len(model.weights):
        raise UsageError(
            f"Checkpoint {str(ckpt.path)!r} holds {len(values)} weight tensors but the model "
            f"built for this run has {len(model.weights)}; expected the same configuration "
            f"as the interrupted run. Resume without changing the backbone, head or plugins."
        )
    for var, value in zip(model.weights, values):
        var.assign(value)
    opt_values = _arrays(ckpt.path / "optimizer.npz")
    if opt_values and getattr(model, "optimizer", None) is not None:
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        for var, value in zip(model.optimizer.variables, opt_values):
            var.assign(value)
    if (ckpt.path / "rng.npz").is_file():  # dropout's random stream continues where it stopped
        for var, value in zip(_rng_state(model), _arrays(ckpt.path / "rng.npz")):
            var.assign(value)


def _arrays(path: Path) -> list[Any]:
    """The arrays ``save`` wrote into one .npz file, in order."""
    import numpy as np

    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def _rng_state(model: Any) -> list[Any]:
    """The Dropout layers' SeedGenerator state: in Keras' ``variables`` but not ``weights``,
    and needed for a resumed run to draw the same dropout masks."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def callback(run_dir: Path, *, phase: str, epochs: int, config: dict[str, Any],
             history: dict[str, list[float]] | None = None,
             best: Any = None, data: dict[str, Any] | None = None) -> Any:
    """A Keras callback that checkpoints after every epoch. ``history`` continues a resume;
    ``best`` (a ``clf.train.fit.best_epoch`` callback earlier in the list) is saved too."""
    import keras

    past = {k: list(v) for k, v in (history or {}).items()}

    class EpochCheckpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            for k, v in (logs or {}).items():
                past.setdefault(k, []).append(float(v))
            save(run_dir, self.model, phase=phase, epoch=epoch + 1, epochs=epochs,
                 history=past, config=config, data=data,
                 best=(best.epoch, best.value, best.values) if best is not None else None)

    cb = EpochCheckpoint()
    cb.history_so_far = past
    return cb


def epoch_batches(ds: Any, *, seed: int, buffer: int, first_epoch: int, epochs: int,
                  batch: Callable[[Any], Any]) -> Any:
    """Batches for epochs ``first_epoch .. epochs-1``, each shuffled by (seed, epoch) only, so a
    resumed run and every strategy see the same batches; ``batch`` batches one epoch. Fit with
    ``steps_per_epoch=Distribution.steps(n)``, so epochs end where each shuffle ends."""
    import tensorflow as tf

    def one_epoch(epoch: Any) -> Any:
        epoch_seed = tf.constant(int(seed) * 100_003, tf.int64) + epoch
        graph = tf.compat.v1.get_default_graph()
        if graph.seed is not None and graph.seed % (2**31 - 1) == 0:
            # --seed 0: TensorFlow's get_seed compares (0, op seed) with (0, 0) in Python, which
            # a tensor op seed cannot answer; another graph seed avoids it (the op seed sets the order).
            graph.seed = 1
        shuffled = ds.shuffle(buffer, seed=epoch_seed, reshuffle_each_iteration=False)
        return batch(shuffled)

    return tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)
