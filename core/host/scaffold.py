"""``clf new-plugin NAME --kind KIND``: write a ready-to-install plugin package (pyproject.toml
with the ``clf`` entry point, a working module, a README and a test)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from string import Template

from clf.errors import UsageError

_HOOK = {"backbone": "register_backbones", "head": "register_heads",
         "loader": "register_data_loaders", "exporter": "register_exporters"}
KINDS = tuple(_HOOK)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def plugin_names(name: str) -> dict[str, str]:
    """NAME -> component name, distribution (also the folder) and module (``my-cnn`` ->
    ``my_cnn``, ``clf-my-cnn``, ``clf_my_cnn``)."""
    component = re.sub(r"^clf[-_]", "", name.strip().lower()).replace("-", "_")
    if not _NAME.match(component):
        raise UsageError(
            f"Plugin name {name!r} is not usable; expected lowercase letters, digits, '-' or "
            f"'_', starting with a letter (e.g. 'my-cnn'). Pass another NAME."
        )
    dist = "clf-" + component.replace("_", "-")
    return {"name": component, "dist": dist, "module": "clf_" + component}


def create_plugin(name: str, kind: str, output: str | Path = ".") -> list[Path]:
    """Write the package into ``output/clf-NAME/``; returns the files written."""
    if kind not in KINDS:
        raise UsageError(f"Unknown plugin kind {kind!r}; expected one of {', '.join(KINDS)}. Pass --kind.")
    names = plugin_names(name)
    root = Path(output) / names["dist"]
    if root.exists() and any(root.iterdir()):
        raise UsageError(
            f"{str(root)!r} already exists and is not empty; expected a new folder so nothing "
            f"is overwritten. Pass another NAME or --output."
        )
    values = {**names, "kind": kind, "hook": _HOOK[kind]}
    files = {
        "pyproject.toml": _PYPROJECT,
        f"{names['module']}.py": _MODULES[kind],
        "README.md": _README,
        f"tests/test_{names['name']}.py": _TESTS[kind],
    }
    written = []
    for rel, template in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(values).lstrip("\n"), encoding="utf-8")
        written.append(path)
    return written


def pip_target(root: Path) -> str:
    """``root`` as a local folder for pip (``./clf-mlp2``; bare ``clf-mlp2`` means the index)."""
    text = str(root)
    if root.is_absolute() or text.startswith(("./", "../", ".\\", "..\\")):
        return text
    return f".{os.sep}{text}"

_PYPROJECT = '''
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "clf $kind plugin: $name"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["clf>=0.1"]

# clf finds its plugins through this entry-point group.
[project.entry-points.clf]
$name = "$module"

[tool.setuptools]
py-modules = ["$module"]
'''

_README = '''
# $dist

A clf $kind plugin providing `$name` (hook `$hook`), written by `clf new-plugin`.

```bash
pip install .                 # into the environment where clf is installed
clf plugins                   # $name is listed with $dist 0.1.0
python -m pytest tests        # the plugin's own test
```

Edit `$module.py`; the hook's contract is in clf's docs/plugins.md.
'''

_MODULES = {
    "backbone": '''
"""clf plugin $dist: backbone ``$name``."""

import clf


def build(input_shape, weights):
    """A small CNN trained from scratch: image -> 32 pooled features. Replace with yours."""
    import keras

    if weights == "imagenet":
        raise clf.WeightsError(
            "Backbone '$name' has no ImageNet weights; expected --weights none or a weights "
            "file saved from '$name'. Pass --weights none."
        )
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, outputs, name="$name")
    if weights is not None:
        model.load_weights(str(weights))
    return model


@clf.hookimpl
def register_backbones(register):
    # trainable=True: trained with the head (no pretrained weights to keep frozen).
    register("$name", build, preprocess="rescale", input_size=(64, 64), features=32,
             trainable=True, description="$name: a small CNN trained from scratch")
''',
    "head": '''
"""clf plugin $dist: head ``$name``."""

import clf


def build(features, num_classes, *, dropout=0.0, hidden_units=0, **_):
    """A hidden ReLU layer (64 units unless --hidden-units), optional dropout, softmax."""
    import keras

    x = keras.layers.Dense(int(hidden_units) or 64, activation="relu", name="${name}_hidden")(features)
    if dropout:
        x = keras.layers.Dropout(float(dropout), name="${name}_dropout")(x)
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32",
                              name="${name}_predictions")(x)


@clf.hookimpl
def register_heads(register):
    register("$name", build, description="$name: hidden ReLU layer + softmax")
''',
    "loader": '''
"""clf plugin $dist: data loader ``$name``."""

import random
from pathlib import Path

import clf
from clf.data.images import DatasetBundle, Split, files_dataset, is_image_file


def load(source, *, image_size, seed, validation_split, **_):
    """One folder per class under SOURCE; a seeded validation split per class."""
    root = Path(source)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if len(classes) < 2:
        raise clf.DataError(
            f"{str(source)!r} holds {len(classes)} class folder(s); expected a folder with at "
            f"least two folders of images. Pass --data DIR."
        )
    rng = random.Random(seed)
    splits = {"train": Split([], []), "validation": Split([], [])}
    for label, name in enumerate(classes):
        files = sorted(str(f) for f in (root / name).rglob("*") if is_image_file(f))
        rng.shuffle(files)
        n_val = min(max(1, round(len(files) * validation_split)), len(files) - 1)
        for split, part in (("validation", files[:n_val]), ("train", files[n_val:])):
            splits[split].files.extend(part)
            splits[split].labels.extend([label] * len(part))
    train, val = (files_dataset(s.files, s.labels, image_size) for s in splits.values())
    return DatasetBundle(classes, train, val, None, splits)


@clf.hookimpl
def register_data_loaders(register):
    register("$name", load, description="$name: one folder per class, seeded split")
''',
    "exporter": '''
"""clf plugin $dist: exporter ``$name``."""

from pathlib import Path

import clf
from clf.artifacts.predict import KerasPredictor


def export(model, directory, metadata):
    """The model in the native Keras format, as $name.keras."""
    path = Path(directory) / "$name.keras"
    model.save(str(path))
    return [path]


@clf.hookimpl
def register_exporters(register):
    # load: reopens the file for 'clf predict' (labels.json is written by clf).
    register("$name", export, load=KerasPredictor, description="$name: a .keras file")
''',
}

_TEST_HEADER = '''
"""The plugin's own test: run it with the package installed (pip install .)."""

import clf


def test_${name}_is_installed_and_registered():
    host = clf.PluginHost()
    info = host.infos["$name"]
    assert info.distribution == "$dist" and info.hooks == ["$hook"]
    assert not host.skipped, host.warnings
'''

_TESTS = {
    "backbone": _TEST_HEADER + '''

def test_${name}_builds_pooled_features():
    backbone = clf.PluginHost().backbones.get("$name")
    model = backbone.build((32, 32, 3), None)
    assert model.output_shape == (None, 32)
''',
    "head": _TEST_HEADER + '''

def test_${name}_outputs_class_probabilities():
    import keras
    import numpy as np

    head = clf.PluginHost().heads.get("$name")
    features = keras.Input((8,))
    model = keras.Model(features, head.build(features, 3, dropout=0.5, hidden_units=0))
    probs = model.predict(np.ones((2, 8), "float32"), verbose=0)
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
''',
    "loader": _TEST_HEADER + '''

def test_${name}_loads_class_folders(tmp_path):
    import numpy as np
    from PIL import Image

    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(4):
            Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(tmp_path / name / f"{i}.png")
    loader = clf.PluginHost().loaders.get("$name")
    bundle = loader.load(str(tmp_path), image_size=(6, 6), seed=0, validation_split=0.25)
    assert bundle.class_names == ["cat", "dog"]
    assert len(bundle.splits["train"]) == 6 and len(bundle.splits["validation"]) == 2
    image, label = next(iter(bundle.train))
    assert image.shape == (6, 6, 3) and int(label) in (0, 1)
''',
    "exporter": _TEST_HEADER + '''

def test_${name}_writes_a_model_that_reloads(tmp_path):
    import keras
    import numpy as np

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    files = clf.PluginHost().exporters.get("$name").export(model, tmp_path, {})
    assert files and all(f.is_file() for f in files)
    again = keras.models.load_model(str(files[0]))
    x = np.ones((1, 4), "float32")
    assert np.allclose(again.predict(x, verbose=0), model.predict(x, verbose=0))
''',
}
