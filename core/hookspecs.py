"""The hooks a clf plugin can implement (pluggy project name ``clf``).

Every hook is register-callback style: clf calls the hook with a ``register`` function and
the plugin calls it once per component it provides. clf owns ``register``, so it knows which
plugin provided what, rejects a name provided twice and keeps aliases. Hooks must be cheap:
registering builds nothing and downloads nothing; the work happens when the registered
callable is invoked. The reference with each hook's contract is docs/plugins.md.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "clf"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_backbones(register) -> None:
    """Register feature-extractor backbones.

    ``register(name, build, *, preprocess, input_size=(224, 224), aliases=(),
    description=None, params=None, features=None, min_size=32, imagenet_file=None,
    trainable=False)``

    - ``build(input_shape, weights) -> keras.Model``: a headless model taking
      ``input_shape`` (``(height, width, 3)``, already preprocessed) and returning pooled
      features of shape ``[batch, features]``. ``weights`` is ``"imagenet"``, ``None`` or a
      path to a weights file; the backbone loads it or raises ``clf.WeightsError``.
    - ``preprocess``: the name of a preprocessing mode known to
      ``clf.data.preprocessing`` (e.g. ``"caffe"``, ``"tf"``, ``"torch"``, ``"none"``) or one the
      plugin registered with ``clf.data.preprocessing.register_preprocess``. It maps raw RGB
      0-255 floats to what the backbone expects and is saved inside the exported model.
    - ``input_size``: the default ``(height, width)``; ``min_size`` the smallest side.
    - ``params`` / ``features``: parameter count and feature width, for listings, so that
      listing never builds a model (``None`` when unknown).
    - ``imagenet_file``: a ``clf.artifacts.weights.WeightsFile`` (file name, origin URL, known hash)
      that ``weights="imagenet"`` downloads at the default size, for ``clf weights``.
    - ``trainable``: ``False`` (pretrained: clf freezes it and runs it in inference mode);
      ``True`` for a backbone trained from scratch together with the head.
    """


@hookspec
def register_heads(register) -> None:
    """Register classification heads.

    ``register(name, build, *, aliases=(), description=None)``

    - ``build(features, num_classes, **options) -> tensor``: ``features`` is a symbolic
      Keras tensor ``[batch, features]``; return the output tensor ``[batch, num_classes]``
      of class probabilities (float32). ``options`` holds head options from the run
      configuration (``dropout``, ``hidden_units``); ignore the ones that do not apply.
    """


@hookspec
def register_data_loaders(register) -> None:
    """Register data loaders.

    ``register(name, load, *, aliases=(), description=None)``

    - ``load(source, *, image_size, seed, validation_split) -> clf.DatasetBundle``:
      ``source`` is what the user passed as ``--data``. The bundle holds the sorted class
      names and unbatched ``tf.data`` datasets of ``(image, label)`` pairs: float32 RGB
      images in 0-255 of ``image_size`` and int32 labels indexing the class names. The
      engine batches, augments, caches and prefetches. Raise ``clf.DataError`` for bad data.
      ``image_size`` is a ``clf.data.images.ImageSize`` carrying the run's centre crop: hand it to
      ``clf.data.images.files_dataset`` (or ``decode_image``) so training crops as predict does.
      A loader that also accepts ``skip`` (files to leave out) and ``substitute`` (file ->
      converted copy), or ``**kwargs``, gets the dataset doctor's quarantine and conversions.
    """


@hookspec
def register_exporters(register) -> None:
    """Register model exporters.

    ``register(name, export, *, load=None, aliases=(), description=None)``

    - ``export(model, directory, metadata) -> list[pathlib.Path]``: write the trained Keras
      model (raw RGB 0-255 in, probabilities out) into ``directory`` and return the files
      written. ``metadata`` is the label record (class names in output order, backbone,
      input size, preprocessing); clf writes it as ``labels.json`` beside the artifacts.
    - ``load(path, labels) -> clf.Predictor``, optional: reopen an artifact this exporter
      wrote (``path`` is its first file, ``labels`` the parsed labels.json) so ``clf predict``
      can use it.
    """


@hookspec
def register_callbacks(register) -> None:
    """Register Keras training callbacks.

    ``register(name, make, *, description=None)``

    - ``make(config, run_dir) -> keras.callbacks.Callback | None``: called at the start of
      training; return ``None`` to stay out of this run (e.g. when a flag is off).
    """
