"""One traced inference function per Keras model, shared by every caller and the TFLite
converter. Unlike Keras' ``predict_on_batch``, which retraces for each new batch shape, a
``tf.function`` with an unknown batch dimension is traced once for every batch size.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from clf.logs import drop_message

if TYPE_CHECKING:
    import keras

# ``images [n, h, w, 3] -> outputs [n, ...]`` as numpy.
BatchFn = Callable[[np.ndarray], np.ndarray]

# TensorFlow counts traces per Python function, so one trace per model looks like retracing
# after a few models: a warning about nothing a user can change.
drop_message("tensorflow", "forward_fn.<locals>.<lambda>")

# Beside the model, not on it: Keras would track and export a tf.function attribute.
# Weak keys let finished models be collected.
_FORWARDS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def forward_fn(model: "keras.Model") -> Any:
    """``images -> outputs`` for ``model`` in inference mode, traced once per model, with
    the input named ``image`` as in exported models."""
    import tensorflow as tf

    fn = _FORWARDS.get(model)
    if fn is None:
        ref = weakref.ref(model)  # the function must not keep its own key alive
        shape = model.input_shape
        fn = tf.function(lambda image: ref()(image, training=False),  # type: ignore[misc]
                         input_signature=[tf.TensorSpec([None, *shape[1:]], tf.float32, name="image")])
        _FORWARDS[model] = fn
    return fn


def predict(model: "keras.Model", images: Any) -> np.ndarray:
    """``model``'s float32 outputs for one batch, through the traced forward so every
    caller gets the same numbers."""
    return np.asarray(forward_fn(model)(np.asarray(images, np.float32)), np.float32)


def batch_fn(model: "keras.Model") -> BatchFn:
    """``predict`` bound to ``model``: what evaluation and verification take."""
    return lambda images: predict(model, images)


def in_batches(fn: BatchFn, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """``fn`` over ``images`` in batches of ``batch_size``, concatenated."""
    out = [np.asarray(fn(images[i:i + batch_size]), np.float32) for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
