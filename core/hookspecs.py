"""The hooks a clf plugin can implement (pluggy project name ``clf``): the one place the hook
contract is written, rendered as docs/reference/hooks.md and checked against ``clf.host.registry``
by tests/test_plugin_docs.py.

Every hook receives ``register`` and returns nothing: the plugin calls
``register(name, fn, **options)`` once per component, so clf knows which plugin provided what.
Rules common to every hook:

- ``name``: lowercase letters, digits and ``_``, starting with a letter. Lookups accept
  ``-`` for ``_`` and any case. A name or alias another plugin already provides is an error
  naming both plugins.
- ``aliases``: other names for the same component, under the same rule.
- ``description``: one line for listings; defaults to the first line of ``fn``'s docstring.
- Registering must be cheap (import heavy libraries inside ``fn``): hooks run on every
  ``clf`` command, listings included.
- An option the registry does not know is an error naming the plugin.
- Raise a ``clf.ClfError`` subclass from ``fn`` for problems the user can fix: the CLI
  shows one line instead of a traceback.
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
      ``None`` (random) or a weights file's path; ``build`` loads it or raises
      ``clf.WeightsError`` saying what to pass instead.
    - ``preprocess``: how raw RGB 0-255 floats become what the network expects. A mode name
      (one per ``keras.applications`` module: ``"vgg16"``, ``"mobilenet_v2"``, ...; or
      ``"rescale"`` (x/255), ``"none"``), a name the plugin registered at import time with
      ``clf.register_preprocess(name, fn)``, or the function ``fn(x) -> x`` itself (Keras
      ops), registered as ``<plugin>.<backbone>``. The mode's name is saved in the exported
      model, so reloading it needs the mode registered (your plugin loaded).
    - ``input_size``: the default ``(height, width)`` when ``--image-size`` is not given.
    - ``params``, ``features``: parameter count and feature width for ``clf backbones``, which
      builds nothing (``None``: unknown).
    - ``min_size``: the smallest side accepted; a smaller ``--image-size`` is an error.
    - ``imagenet_file``: the ``clf.WeightsFile`` ``weights="imagenet"`` downloads at the
      default size (for ``clf weights``); ``None`` without ImageNet weights.
    - ``trainable``: ``False`` for a pretrained backbone (frozen, inference mode); ``True``
      for one trained from scratch with the head.

    Contract: clf calls ``build`` once per run and saves preprocessing, backbone and head in
    the exported model, so serving cannot skew from training. An output that is not 2-D is
    an error naming the backbone and its plugin.
    Tested by ``test_hook_register_backbones``.
    """


@hookspec
def register_heads(register: Callable[..., None]) -> None:
    """Register classification heads.

    ``register(name, build, *, aliases=(), description=None)``

    - ``build(features, num_classes, **options) -> tensor``: from a symbolic ``[batch, features]``
      tensor, return float32 softmax probabilities ``[batch, num_classes]`` (``dtype="float32"``
      on the last layer, for mixed precision). ``options`` (``dropout``, ``hidden_units``):
      accept ``**_``.

    Contract: clf wraps the head in its own ``keras.Model`` (trained on cached features, then
    joined to the backbone) with sparse categorical cross-entropy; on multi-label data a head
    outputs a sigmoid a class instead and trains with binary cross-entropy (the built-in
    ``softmax`` gives way to the built-in ``sigmoid``). An output whose last
    dimension is not ``num_classes`` is an error naming the head and its plugin. Tested by
    ``test_hook_register_heads``.
    """


@hookspec
def register_data_loaders(register: Callable[..., None]) -> None:
    """Register data loaders.

    ``register(name, load, *, aliases=(), description=None)``

    - ``load(source, *, image_size, seed, validation_split, **_) -> clf.DatasetBundle``:
      ``source`` is the ``--data`` value as given. ``image_size`` is a ``clf.ImageSize``
      (``(height, width)`` plus the centre crop): pass it to ``clf.files_dataset`` or
      ``clf.decode_image`` so training crops as ``clf predict`` will. ``seed`` and
      ``validation_split`` draw a validation split when the data has none. Accept ``**_``
      (later versions may pass more); a loader accepting ``skip`` and ``substitute`` (or
      ``**kwargs``) gets the dataset doctor's quarantine and conversions; one accepting ``task``
      gets ``--task`` (``auto``, ``single``, ``multilabel``).

    Returns a ``clf.DatasetBundle(class_names, train, validation=None, test=None,
    splits={})``: ``class_names`` sorted, at least two, in output order; unbatched ``tf.data``
    datasets of ``(image, label)``, float32 RGB 0-255 images of ``image_size`` and int32 labels;
    ``splits`` maps split names to ``clf.Split(files, labels)`` when the data comes from files.
    Multi-label data: ``DatasetBundle(..., task="multilabel")`` and ``clf.Split(files, labels,
    targets)``, each file's label indices in ``targets`` (``labels`` holds the first, or 0).

    Contract: do not batch (the engine batches, shuffles, augments and caches). Raise
    ``clf.DataError`` naming the offending file, row or folder. Tested by
    ``test_hook_register_data_loaders``.
    """


@hookspec
def register_exporters(register: Callable[..., None]) -> None:
    """Register model exporters.

    ``register(name, export, *, load=None, holds=None, aliases=(), description=None, options=(),
    requires=(), install="", fixed_input=False, check=None)``

    - ``export(model, directory, metadata, **options) -> list[pathlib.Path]``: write the
      trained ``keras.Model`` (raw RGB 0-255 in, probabilities out) into ``directory`` (the
      run folder) and return the files written, the main artifact first. ``metadata`` is
      the label record (``class_names`` in output order, ``backbone``, ``input_size``,
      ``preprocessing``, ``inputs[name]``), written as ``labels.json``. By default ``model``
      is a photo model (any ``h, w``, starting with ``clf.FitPhoto``; ``clf.is_photo_model``);
      ``clf.fixed_model(model)`` gives the fixed-size one (``--model-input fixed``, full int8).
    - ``load(path, labels) -> clf.Predictor``, optional: reopen an artifact this exporter
      wrote (``path``: its first file; ``labels``: parsed ``labels.json``) for ``clf predict``,
      ``evaluate``, ``verify`` and ``serve``. A ``Predictor`` implements ``predict_batch(images)``
      (float32 ``[n, h, w, 3]`` RGB 0-255 -> the model's outputs ``[n, classes]``, then the known
      score column when ``labels`` has ``unknown``; any ``n``); ``clf serve`` calls
      it from one thread at a time, at a few fixed batch sizes. Without ``load``, predicting
      from the artifact is a clear error.
    - ``holds(path, model) -> bool``, optional: whether the file at ``path`` holds exactly
      ``model`` (architecture and every weight); True lets the export's round-trip check skip
      reloading and running it (``clf.h5_holds`` proves it for a Keras HDF5 file).
    - ``options``: the keyword options ``export`` takes (``"quantize"``,
      ``"representative_data"``); only those are passed.
    - ``requires``: modules ``export`` or ``load`` imports, checked before any data is read,
      so a missing package fails at once (exit code 2), not after training.
    - ``install``: how to get ``requires`` (``"pip install 'clf[onnx]'"``), shown in that error.
    - ``fixed_input``: ``export`` always gets the fixed-size model (its client resizes itself).
    - ``check() -> str | None``: what ``export`` needs outside Python (an npm package), checked
      with ``requires``; ``None`` when it is there, else what is missing and how to get it.

    Contract: clf records each returned file's sha256 in ``labels.json`` and checks it before
    ``load``. Write under a ``.tmp-`` name and rename (``clf.atomic_path``), so a crash leaves
    no valid-looking file; clf removes such leftovers when an export fails. Other exceptions
    become ``ExportError``. After ``load``, the predictor's ``output_width()`` must equal the
    number of class names (plus one with a known score: ``clf.artifacts.labels.output_width``).
    Tested by ``test_hook_register_exporters``.
    """


@hookspec
def register_callbacks(register: Callable[..., None]) -> None:
    """Register Keras training callbacks.

    ``register(name, make, *, aliases=(), description=None, finish=None, requires=(), install="")``

    - ``make(config, run_dir) -> keras.callbacks.Callback | None``: ``config`` is the run's
      ``clf.RunConfig``, ``run_dir`` its folder. Return ``None`` to stay out of this run.
    - ``finish(result) -> None``, optional: called once per run after the run folder is
      complete (model exported, metrics, manifest written), whatever trained the head (the
      solved head fits no epochs, so ``make``'s callback may never run); ``result`` is the
      ``clf.RunResult``. An experiment tracker uploads here (the built-in ``mlflow``).
    - ``requires``: modules ``make`` or ``finish`` import, checked before any data is read
      when the run names the callback in ``--track`` (a missing one is exit code 2).
    - ``install``: how to get ``requires`` (``"pip install 'clf[mlflow]'"``), shown in that error.

    Contract: every factory is called at the start of every run's training (decide in
    ``make``; ``config.track`` lists the trackers the user asked for); the callbacks go to
    ``model.fit``. Write files only inside ``run_dir``.
    Tested by ``test_hook_register_callbacks``.
    """
