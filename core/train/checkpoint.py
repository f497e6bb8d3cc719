"""Checkpoint every epoch, atomically, and resume from the last completed one.

Works for any ``model.fit`` phase: ``callback(...)`` is a Keras callback that, after each
epoch, writes the model's weights, the optimizer's state (Adam moments and step count) and
the epoch into ``RUN/checkpoint/<phase>-epoch-NNNN/``. The folder is written under a
temporary name and renamed when complete, so a kill at any moment leaves either the
previous checkpoint or the new one, never a half-written one. Resuming builds the same
model, ``restore``s it and calls ``fit(..., initial_epoch=checkpoint.epoch)``.

For the resumed epochs to see the very same batches as an uninterrupted run, the training
order must depend only on (seed, epoch), not on how many epochs this process has already
iterated: ``epoch_batches`` draws each epoch's shuffle from ``seed`` and the epoch number.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clf.errors import UsageError

CHECKPOINT_DIR = "checkpoint"
FORMAT = "clf-checkpoint/1"


@dataclass
class Checkpoint:
    path: Path
    phase: str
    epoch: int  # completed epochs
    epochs: int
    history: dict[str, list[float]]
    config: dict[str, Any]


def _dir_name(phase: str, epoch: int) -> str:
    return f"{phase}-epoch-{epoch:04d}"


def save(run_dir: Path, model, *, phase: str, epoch: int, epochs: int,
         history: dict[str, list[float]], config: dict[str, Any], best=None) -> Path:
    """Write one checkpoint folder atomically and drop the older ones of the same phase.
    ``best``: ``(epoch, val_loss, weight values)`` of the best epoch so far, kept beside."""
    import numpy as np

    root = Path(run_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / _dir_name(phase, epoch)
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    np.savez(tmp / "weights.npz", *[np.asarray(v.numpy()) for v in model.weights])
    optimizer = getattr(model, "optimizer", None)
    opt_vars = list(optimizer.variables) if optimizer is not None and optimizer.built else []
    np.savez(tmp / "optimizer.npz", *[np.asarray(v.numpy()) for v in opt_vars])
    np.savez(tmp / "rng.npz", *[np.asarray(v.numpy()) for v in _rng_state(model)])
    state = {"format": FORMAT, "phase": phase, "epoch": epoch, "epochs": epochs,
             "history": history, "config": config}
    if best is not None and best[2] is not None:
        np.savez(tmp / "best.npz", *best[2])
        state["best"] = {"epoch": best[0], "val_loss": best[1]}
    (tmp / "state.json").write_text(json.dumps(state, indent=2, default=str) + "\n", encoding="utf-8")
    for f in tmp.iterdir():  # on disk before the rename makes the folder visible
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in root.glob(f"{phase}-epoch-*"):
        if old != final and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return final


def _read(folder: Path) -> Checkpoint | None:
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        if state.get("format") != FORMAT or not (folder / "weights.npz").is_file():
            return None
        return Checkpoint(folder, state["phase"], int(state["epoch"]), int(state["epochs"]),
                          state.get("history", {}), state.get("config", {}))
    except (OSError, ValueError, KeyError):
        return None


def latest(run_dir: Path, phase: str | None = None) -> Checkpoint | None:
    """The most advanced complete checkpoint in a run folder (of ``phase`` if given)."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return None
    found = [c for c in (_read(d) for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
             if c is not None and (phase is None or c.phase == phase)]
    return max(found, key=lambda c: c.epoch) if found else None


def require(run_dir: Path) -> Checkpoint:
    """The checkpoint to resume from, or a clear error."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(
            f"--resume {str(run_dir)!r}: no such run folder; expected the folder of an "
            f"interrupted 'clf run'. Check the path (run folders are under runs/ by default)."
        )
    ckpt = latest(run_dir)
    if ckpt is None:
        raise UsageError(
            f"--resume {str(run_dir)!r}: the folder has no complete checkpoint "
            f"({CHECKPOINT_DIR}/<phase>-epoch-NNNN with state.json); expected a run that "
            f"finished at least one epoch. Start a new run instead."
        )
    return ckpt


def best_so_far(ckpt: Checkpoint | None):
    """``(epoch, val_loss, weight values)`` of the best epoch a checkpoint kept, or None."""
    import numpy as np

    if ckpt is None or not (ckpt.path / "best.npz").is_file():
        return None
    try:
        state = json.loads((ckpt.path / "state.json").read_text(encoding="utf-8"))["best"]
        with np.load(ckpt.path / "best.npz") as data:
            values = [data[f"arr_{i}"] for i in range(len(data.files))]
        return int(state["epoch"]), float(state["val_loss"]), values
    except (OSError, ValueError, KeyError):
        return None


def restore(model, ckpt: Checkpoint) -> None:
    """Load weights and optimizer state saved by ``save`` into an identically built model."""
    import numpy as np

    with np.load(ckpt.path / "weights.npz") as data:
        values = [data[f"arr_{i}"] for i in range(len(data.files))]
    if len(values) != len(model.weights):
        raise UsageError(
            f"Checkpoint {str(ckpt.path)!r} holds {len(values)} weight tensors but the model "
            f"built for this run has {len(model.weights)}; expected the same configuration "
            f"as the interrupted run. Resume without changing the backbone, head or plugins."
        )
    for var, value in zip(model.weights, values):
        var.assign(value)
    with np.load(ckpt.path / "optimizer.npz") as data:
        opt_values = [data[f"arr_{i}"] for i in range(len(data.files))]
    if opt_values and getattr(model, "optimizer", None) is not None:
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        for var, value in zip(model.optimizer.variables, opt_values):
            var.assign(value)
    rng = ckpt.path / "rng.npz"
    if rng.is_file():  # dropout's random stream continues where it stopped
        with np.load(rng) as data:
            for var, value in zip(_rng_state(model), [data[f"arr_{i}"] for i in range(len(data.files))]):
                var.assign(value)


def _rng_state(model) -> list:
    """The model's random-seed state (the SeedGenerator of each Dropout layer): part of
    Keras' ``variables`` but not of its ``weights``. Without it a resumed run would draw
    other dropout masks than the uninterrupted run."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def callback(run_dir: Path, *, phase: str, epochs: int, config: dict[str, Any],
             history: dict[str, list[float]] | None = None, observer=None, best=None):
    """A Keras callback that checkpoints after every epoch (``history`` continues a resume;
    ``best``, a :func:`clf.train.callbacks.best_epoch` callback earlier in the list, has its
    best epoch saved too, so a resumed run can still go back to it)."""
    import keras

    past = {k: list(v) for k, v in (history or {}).items()}

    class EpochCheckpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            for k, v in (logs or {}).items():
                past.setdefault(k, []).append(float(v))
            save(run_dir, self.model, phase=phase, epoch=epoch + 1, epochs=epochs,
                 history=past, config=config,
                 best=(best.epoch, best.value, best.values) if best is not None else None)

    cb = EpochCheckpoint()
    cb.history_so_far = past
    return cb


def epoch_batches(ds, *, seed: int, batch_size: int, buffer: int, first_epoch: int, epochs: int,
                  batch=None):
    """Batches for epochs ``first_epoch .. epochs-1``, each epoch shuffled by (seed, epoch).

    Pass ``steps_per_epoch=steps(n, batch_size)`` to fit: Keras then keeps one iterator
    across epochs, so epoch boundaries fall exactly where each epoch's shuffle ends. The
    order depends on nothing else (not on how many iterators were opened before), so a
    resumed run and every tf.distribute strategy see the same batches. ``batch`` batches one
    shuffled epoch (default ``ds.batch(batch_size)``; the engine passes
    ``clf.train.distribute.Distribution.batch``, which keeps a small split divisible by replicas)."""
    import tensorflow as tf

    def one_epoch(epoch):
        epoch_seed = tf.constant(int(seed) * 100_003, tf.int64) + epoch
        graph = tf.compat.v1.get_default_graph()
        if graph.seed is not None and graph.seed % (2**31 - 1) == 0:
            # With a global seed of 0 (--seed 0) TensorFlow's get_seed compares (0, op seed)
            # with (0, 0) in Python, which a tensor op seed cannot answer; any other graph
            # seed for this one traced function avoids it (the op seed keeps the order).
            graph.seed = 1
        shuffled = ds.shuffle(buffer, seed=epoch_seed, reshuffle_each_iteration=False)
        return batch(shuffled) if batch is not None else shuffled.batch(batch_size)

    return tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)


def steps(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))
