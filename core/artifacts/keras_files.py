"""Whether a written Keras HDF5 file holds exactly an in-memory model: the same architecture
config and every weight bit for bit, read back as Keras' legacy HDF5 writer stores them.

Export verification uses it instead of reloading the file and running it: the in-memory
model is the one the run checked, so a file proven identical to it answers as it does
(``clf verify`` still reloads and runs). Anything unexpected reads as "not proven", and the
caller falls back to the full round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def h5_holds(path: str | Path, model: Any) -> bool:
    """True when ``path`` (a ``model.save('x.h5')`` file) has ``model``'s config and weights."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            if _stored_config(f) != _config_of(model):
                return False
            group = f["model_weights"]
            stored_layers = [_text(n) for n in group.attrs["layer_names"]]
            if stored_layers != [layer.name for layer in model.layers]:
                return False
            for layer in model.layers:
                # Keras' legacy order: trainable weights, then the others (``_legacy_weights``).
                weights = layer.trainable_weights + layer.non_trainable_weights
                names = [_text(n) for n in group[layer.name].attrs.get("weight_names", [])]
                if len(names) != len(weights):
                    return False
                for name, weight in zip(names, weights):
                    stored = group[layer.name][name]
                    value = np.asarray(weight.numpy())
                    if stored.shape != value.shape or stored.dtype != value.dtype:
                        return False
                    if not np.array_equal(stored[()], value):
                        return False
        return True
    except Exception:  # an unreadable or unexpected file is not proven: the full check runs
        return False


def _stored_config(f: Any) -> Any:
    return json.loads(_text(f.attrs["model_config"]))


def _config_of(model: Any) -> Any:
    """The model's config as the legacy HDF5 writer serialises it (JSON round trip included)."""
    from keras.src.legacy.saving import json_utils
    from keras.src.legacy.saving import saving_options

    with saving_options.keras_option_scope(use_legacy_config=True):
        config = {"class_name": model.__class__.__name__, "config": model.get_config()}
        return json.loads(json.dumps(config, default=json_utils.get_json_type))


def _text(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)
