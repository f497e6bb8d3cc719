"""The hooks a clf plugin can implement (pluggy project name ``clf``): the hook reference.

The docs site renders these docstrings as its hook reference (docs/reference/hooks.md), and
tests/test_plugin_docs.py checks each ``register(...)`` signature below against the fields of
its registry's dataclass in ``clf.host.registry``, so this module is the one place the hook
contract is written.

Every hook receives one argument, ``register``, and returns nothing: the plugin calls
``register(name, fn, **options)`` once per component it provides. clf owns ``register``, so
it knows which plugin provided what, rejects a name provided twice and keeps aliases.
Rules common to every hook:

- ``name``: lowercase letters, digits and ``_``, starting with a letter. Lookups accept
  ``-`` for ``_`` and any case. A name or alias another plugin already provides is an error
  naming both plugins.
- ``aliases``: other names for the same component, under the same rule.
- ``description``: one line for listings; defaults to the first line of ``fn``'s docstring.
- Registering must be cheap: build nothing, download nothing, and import heavy libraries
  (TensorFlow, Keras, converters) inside ``fn``. Hooks run on every ``clf`` command,
  listings included.
- An option the registry does not know is an error naming the plugin.
- Raise a ``clf.ClfError`` subclass (``DataError``, ``WeightsError``, ...) from ``fn`` for
  problems the user can fix: the CLI shows its message as one line instead of a traceback.
"""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT_NAME = "clf"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_backbones(register: Callable[..., None]) -> None:
    """Register feature-extractor backbones.

    ``register(name, build, *, preprocess, input_size=(224, 224), aliases=(),
    description=None, params=None, features=None, min_size=32, imagenet_file=None,
    trainable=False)``

    - ``build(input_shape, weights) -> keras.Model``: a headless model from the preprocessed
      image to pooled features, output shape ``[batch, features]``. ``input_shape`` is
      ``(height, width, 3)``, the size the run trains at. ``weights`` is ``"imagenet"``,
      ``None`` (random: ``--weights none``) or the path of a weights file; ``build`` loads it
      or raises ``clf.WeightsError`` saying what to pass instead (e.g. no ImageNet weights
      for a network trained from scratch).
    - ``preprocess``: how raw RGB 0-255 floats become what the network expects. A mode name
      (one per ``keras.applications`` module: ``"vgg16"``, ``"mobilenet_v2"``, ...; or
      ``"rescale"`` (x/255), ``"none"``), a name the plugin registered at import time with
      ``clf.register_preprocess(name, fn)``, or the function ``fn(x) -> x`` itself (Keras
      ops), which is registered as ``<plugin>.<backbone>``. The mode's name is saved inside
      the exported model, so the model reloads wherever that mode is registered; a mode
      from your plugin needs the plugin loaded to reload the model. A mode nobody
      registered fails ``clf run`` before any work.
    - ``input_size``: the default ``(height, width)`` when ``--image-size`` is not given.
    - ``params``, ``features``: parameter count and feature width, shown by ``clf backbones``
      so that listing builds nothing (``None``: unknown, shown as ``?``).
    - ``min_size``: the smallest side accepted; a smaller ``--image-size`` is an error.
    - ``imagenet_file``: a ``clf.WeightsFile`` (file name, origin URL, known hash): the file
      ``weights="imagenet"`` downloads at the default size, for ``clf weights``; ``None``
      when the backbone has no ImageNet weights.
    - ``trainable``: ``False`` for a pretrained backbone (frozen, run in inference mode);
      ``True`` for one trained from scratch with the head (not frozen; its dropout is
      active while training).

    Contract: clf calls ``build`` once per run, puts a ``Preprocess`` layer in front and the
    head after, and saves all three in the exported model, so serving cannot skew from
    training. A backbone whose output is not 2-D is an error naming it and its plugin.
    Tested by ``test_hook_register_backbones``.
    """


@hookspec
def register_heads(register: Callable[..., None]) -> None:
    """Register classification heads.

    ``register(name, build, *, aliases=(), description=None)``

    - ``build(features, num_classes, **options) -> tensor``: ``features`` is a symbolic
      Keras tensor ``[batch, features]``; return the output tensor ``[batch, num_classes]``
      of class probabilities (softmax), float32 (``dtype="float32"`` on the last layer keeps
      it so under mixed precision). ``options`` holds the run's head options
      (``dropout``, ``hidden_units``): accept ``**_`` and ignore the ones that do not apply.

    Contract: clf wraps the head in its own ``keras.Model`` over the features, so it can be
    trained on cached features and joined to the backbone unchanged, and trains it with
    sparse categorical cross-entropy. An output whose last dimension is not ``num_classes``
    is an error naming the head and its plugin. Tested by ``test_hook_register_heads``.
    """


@hookspec
def register_data_loaders(register: Callable[..., None]) -> None:
    """Register data loaders.

    ``register(name, load, *, aliases=(), description=None)``

    - ``load(source, *, image_size, seed, validation_split, **_) -> clf.DatasetBundle``:
      ``source`` is the ``--data`` value as given (a folder, a CSV file, a URL: whatever the
      loader reads). ``image_size`` is a ``clf.ImageSize``: a ``(height, width)`` tuple that
      also carries the run's centre crop; hand it to ``clf.files_dataset`` or
      ``clf.decode_image`` so training crops photos exactly as ``clf predict`` will (a loader
      that resizes photos itself must crop the same way). ``seed`` and ``validation_split``
      are for drawing a validation split when the data has none. Accept ``**_``: later clf
      versions may pass more. A loader that also accepts ``skip`` (files to leave out) and
      ``substitute`` (file -> converted copy), or ``**kwargs``, gets the dataset doctor's
      quarantine and conversions.

    Returns a ``clf.DatasetBundle(class_names, train, validation=None, test=None,
    splits={})``: ``class_names`` sorted, at least two, in the model's output order (saved
    with it); ``train``, ``validation`` and ``test`` unbatched ``tf.data`` datasets of
    ``(image, label)`` pairs, float32 RGB images in 0-255 of ``image_size`` and int32 labels
    indexing ``class_names``; ``splits`` maps split names to ``clf.Split(files, labels)``
    when the data comes from files (counts, the run record, the feature cache).

    Contract: the engine batches, shuffles, augments, caches and prefetches: do not batch.
    Raise ``clf.DataError`` naming the offending file, row or folder for bad data. Tested by
    ``test_hook_register_data_loaders``.
    """


@hookspec
def register_exporters(register: Callable[..., None]) -> None:
    """Register model exporters.

    ``register(name, export, *, load=None, aliases=(), description=None, options=(),
    requires=(), install="")``

    - ``export(model, directory, metadata, **options) -> list[pathlib.Path]``: write the
      trained ``keras.Model`` (raw RGB 0-255 in, probabilities out) into ``directory`` (the
      run folder) and return the files written, the main artifact first. ``metadata`` is
      the label record (``class_names`` in output order, ``backbone``, ``input_size``,
      ``preprocessing``, and ``inputs[name]``: what this artifact takes); clf writes it as
      ``labels.json`` beside the artifacts. By default ``model`` is a photo model: it takes
      ``[n, h, w, 3]`` at any ``h, w`` and starts with ``clf.FitPhoto`` (clf's centre crop
      and resize in builtin ops); ``clf.is_photo_model(model)`` says so, and
      ``clf.fixed_model(model)`` is the same classifier at the fixed input size (what
      ``--model-input fixed`` and full-int8 quantization pass instead).
    - ``load(path, labels) -> clf.Predictor``, optional: reopen an artifact this exporter
      wrote (``path`` is its first file, ``labels`` the parsed ``labels.json``) for ``clf
      predict``, ``clf evaluate``, ``clf verify`` and ``clf serve``. A ``Predictor`` subclass
      implements ``predict_batch(images)`` (float32 ``[n, h, w, 3]`` RGB 0-255 ->
      probabilities ``[n, classes]``, any ``n``) and inherits ``decode(bytes)``. ``clf
      serve`` calls ``predict_batch`` from one thread at a time, at a few fixed batch sizes.
      Without ``load``, predicting from the artifact is a clear error.
    - ``options``: the export options ``export`` takes as keyword arguments
      (``"quantize"``, ``"representative_data"``); only those are passed, so a
      three-argument ``export`` keeps working.
    - ``requires``: the modules ``export`` or ``load`` imports (e.g. ``("tf2onnx", "onnx")``),
      checked before a run reads any data, without importing them: a missing package fails
      at once (exit code 2) instead of after training.
    - ``install``: how to get ``requires`` (e.g. ``"pip install 'clf[onnx]'"``), shown in
      that error.

    Contract: clf calls each exporter named in ``--export`` in turn, then writes
    ``labels.json`` listing every exporter's files, records the sha256 of each and checks it
    before ``load`` is called again. Write under a temporary name starting with ``.tmp-``
    (as ``clf.atomic_path`` does) and rename, so a crash never leaves a valid-looking file;
    clf removes such leftovers when an export fails. An exception other than a
    ``clf.ClfError`` becomes an ``ExportError`` naming the exporter and its plugin. After
    ``load``, the predictor's ``output_width()`` must equal the number of class names.
    Tested by ``test_hook_register_exporters``.
    """


@hookspec
def register_callbacks(register: Callable[..., None]) -> None:
    """Register Keras training callbacks.

    ``register(name, make, *, aliases=(), description=None)``

    - ``make(config, run_dir) -> keras.callbacks.Callback | None``: ``config`` is the run's
      ``clf.RunConfig``, ``run_dir`` its folder. Return ``None`` to stay out of this run
      (e.g. when the flag that asks for the callback is off).

    Contract: every registered factory is called at the start of training in every run
    (there is no option to pick them: decide in ``make``); the callbacks go to
    ``model.fit``. Write files only inside ``run_dir``. Tested by
    ``test_hook_register_callbacks``.
    """
