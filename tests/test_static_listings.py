"""Listings and help without TensorFlow (issue 29): ``clf backbones``, ``plugins``, ``weights list`` and
every ``--help`` answer from the backbone table registered statically, in a process that never imports
TensorFlow or Keras; the table is checked against ``keras.applications`` so it cannot drift (parameter
counts and feature widths: tests/test_backbone_contract.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clf.cli import app

COMMANDS = [["backbones", "--json"], ["plugins"], ["weights", "list"], ["heads"], ["exporters"], ["--help"],
            *[[name, "--help"] for name in ("run", "predict", "evaluate", "serve", "export", "inspect")]]

CHECK = ("import sys, json; from clf.cli import main\n"
         "sys.argv = ['clf', *sys.argv[1:]]\n"
         "try:\n    main()\nexcept SystemExit:\n    pass\n"
         "print(json.dumps(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)), file=sys.stderr)\n")


def test_every_command_listed_here_exists():
    names = {c.name or c.callback.__name__ for c in app.registered_commands} | \
        {g.name for g in app.registered_groups}
    assert {c[0] for c in COMMANDS if not c[0].startswith("-")} <= names


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_listing_imports_no_tensorflow(command):
    done = subprocess.run([sys.executable, "-c", CHECK, *command], capture_output=True, text=True, timeout=120)
    assert json.loads(done.stderr.strip().splitlines()[-1]) == [], done.stderr
    assert done.stdout.strip()


def test_backbones_json_is_the_registry():
    done = subprocess.run([sys.executable, "-c", CHECK, "backbones", "--json"], capture_output=True, text=True,
                          timeout=120)
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["mobilenet_v2_035"]["features"] == 1280 and rows["mobilenet_v2_035"]["input_size"] == [224, 224]


def test_the_static_table_names_what_keras_applications_has():
    import keras

    from clf.plugins.keras_applications import APPS
    from clf.plugins.keras_weights_table import IMAGENET_FILES

    for entry in APPS:
        assert callable(getattr(keras.applications, entry.ctor, None)), entry.name
        module = getattr(keras.applications, entry.module, None)
        assert module is not None and callable(module.preprocess_input), entry.name
    assert set(IMAGENET_FILES) <= {entry.name for entry in APPS}
    names = [entry.name for entry in APPS]
    assert len(names) == len(set(names))
