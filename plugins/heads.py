"""The default classification heads: softmax over the classes (one class a photo) or a sigmoid
a class (multi-label data), optionally after a hidden layer and dropout."""

from __future__ import annotations

from typing import Any, Callable

from clf import hookimpl


def softmax_head(features: Any, num_classes: int, *, dropout: float = 0.0, hidden_units: int = 0, **_: Any) -> Any:
    """Dense softmax classifier; optional hidden ReLU layer and dropout."""
    import keras

    x = features
    if hidden_units:
        x = keras.layers.Dense(int(hidden_units), activation="relu", name="head_hidden")(x)
    if dropout:
        x = keras.layers.Dropout(float(dropout), name="head_dropout")(x)
    # float32 output even under a mixed-precision policy: softmax in float16 is unstable.
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32",
                              name="predictions")(x)


def sigmoid_head(features: Any, num_classes: int, *, dropout: float = 0.0, hidden_units: int = 0, **_: Any) -> Any:
    """Dense sigmoid a class (multi-label: any number of classes a photo); optional hidden ReLU layer and dropout."""
    import keras

    x = features
    if hidden_units:
        x = keras.layers.Dense(int(hidden_units), activation="relu", name="head_hidden")(x)
    if dropout:
        x = keras.layers.Dropout(float(dropout), name="head_dropout")(x)
    return keras.layers.Dense(num_classes, activation="sigmoid", dtype="float32", name="predictions")(x)


@hookimpl
def register_heads(register: Callable[..., None]) -> None:
    register("softmax", softmax_head, aliases=("dense",),
             description="Dense softmax over the classes (optional --hidden-units, --dropout)")
    register("sigmoid", sigmoid_head,
             description="Dense sigmoid a class, for multi-label data (the default there)")
