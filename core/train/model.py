"""Assemble the classifier: raw RGB input -> Preprocess -> frozen backbone -> head. The head
is its own ``keras.Model``, so it trains on cached features and joins the backbone unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from clf.errors import PluginError
from clf.data.preprocessing import Mirror, Preprocess
from clf.host.registry import Backbone, Head


@dataclass
class Classifier:
    model: Any  # keras.Model: images (0-255 RGB) -> probabilities (then the known score, with ``known``)
    backbone: Any  # keras.Model: preprocessed images -> pooled features
    head: Any  # keras.Model: features -> probabilities
    preprocess: str
    tta: str = "none"  # "flip": features averaged with the mirror image's (see backbone_features)
    known: Any = None  # clf.data.preprocessing.KnownScore on the features (clf.train.unknown.attach)

    @property
    def outputs_head(self) -> Any:
        """features -> the model's outputs: the head, and the known score when there is one."""
        return self.model.get_layer("head")


def build_backbone(backbone: Backbone, image_size: tuple[int, int], weights: str | None) -> Any:
    import keras

    model = backbone.build((image_size[0], image_size[1], 3), weights)
    if not isinstance(model, keras.Model):
        raise PluginError(
            f"Backbone {backbone.name!r} (plugin {backbone.plugin!r}) built {type(model).__name__} "
            f"({str(model)[:80]!r}) instead of a keras.Model; expected its build function to "
            f"return the model. Fix the plugin (a missing 'return'?) or pick another --backbone."
        )
    shape = tuple(model.output_shape)
    if len(shape) != 2:
        raise PluginError(
            f"Backbone {backbone.name!r} (plugin {backbone.plugin!r}) outputs shape {shape}; "
            f"expected pooled features [batch, features]. Build it with pooling='avg' or add "
            f"a GlobalAveragePooling2D layer."
        )
    model.trainable = bool(backbone.trainable)
    return model


def build_head(head: Head, num_features: int, num_classes: int, options: dict[str, Any],
               standardize: Any = None) -> Any:
    """The head as its own model over the feature vector; ``standardize`` (a built
    ``Standardize`` layer), when given, goes first so it is saved with the head."""
    import keras

    features = keras.Input(shape=(num_features,), name="features")
    x = standardize(features) if standardize is not None else features
    outputs = head.build(x, num_classes, **options)
    shape = tuple(outputs.shape)
    if shape[-1] != num_classes:
        raise PluginError(
            f"Head {head.name!r} (plugin {head.plugin!r}) outputs shape {shape}; expected "
            f"[batch, {num_classes}] class probabilities. Fix the head's build function."
        )
    return keras.Model(features, outputs, name="head")


def build_classifier(backbone: Backbone, head: Head, num_classes: int,
                     image_size: tuple[int, int], weights: str | None, head_options: dict[str, Any]) -> Classifier:
    base = build_backbone(backbone, image_size, weights)
    head_model = build_head(head, int(base.output_shape[-1]), num_classes, head_options)
    return join(base, head_model, backbone.preprocess, image_size, train_backbone=backbone.trainable)


def backbone_features(base: Any, x: Any, tta: str = "none", *, train_backbone: bool = False) -> Any:
    """Pooled features of preprocessed images ``x`` (``tta="flip"``: averaged with the mirror
    image's). Extraction and the exported model both build here, so cached features match."""
    import keras

    def features(images: Any) -> Any:
        # training=False keeps BatchNormalization in inference mode when fine-tuning unfreezes layers.
        return base(images) if train_backbone else base(images, training=False)

    if tta == "none":
        return features(x)
    if tta == "flip":
        return keras.layers.Average(name="flip_average")([features(x), features(Mirror(name="mirror")(x))])
    raise ValueError(f"Unknown tta {tta!r}; expected 'none' or 'flip'.")


def join(base: Any, head_model: Any, preprocess: str, image_size: Sequence[int], *, train_backbone: bool = False,
         tta: str = "none") -> Classifier:
    """The exported model over raw RGB 0-255, backbone in inference mode unless
    ``train_backbone`` (from scratch: dropout runs in fit)."""
    import keras

    inputs = keras.Input(shape=(image_size[0], image_size[1], 3), name="image")
    x = Preprocess(preprocess, name="preprocess")(inputs)
    outputs = head_model(backbone_features(base, x, tta, train_backbone=train_backbone))
    model = keras.Model(inputs, outputs, name="clf_classifier")
    return Classifier(model, base, head_model, preprocess, tta)
