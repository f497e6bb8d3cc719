"""Listings and help without TensorFlow (issue 29): ``clf backbones``, ``plugins``, ``weights list`` and
every ``--help`` answer from the backbone table registered statically, in a process that never imports
TensorFlow or Keras; the table is checked against ``keras.applications`` so it cannot drift (parameter
counts and feature widths: tests/test_backbone_contract.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from clf.cli import app

COMMANDS = [["backbones", "--json"], ["plugins"], ["weights", "list"], ["heads"], ["exporters"], ["--help"],
            *[[name, "--help"] for name in ("run", "predict", "evaluate", "serve", "export", "inspect")]]

# Every command in one fresh process (one interpreter start instead of one per command): each one's
# output and exit code, then which of TensorFlow and Keras got imported along the way.
CHECK = """
import contextlib, io, json, sys
from clf.cli import main
outputs = []
for command in json.loads(sys.argv[1]):
    sys.argv = ["clf", *command]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
    outputs.append([code, buf.getvalue()])
print(json.dumps({"outputs": outputs, "imported": sorted(m for m in ("tensorflow", "keras") if m in sys.modules)}))
"""


def test_every_command_listed_here_exists():
    names = {c.name or c.callback.__name__ for c in app.registered_commands} | \
        {g.name for g in app.registered_groups}
    assert {c[0] for c in COMMANDS if not c[0].startswith("-")} <= names


def test_listings_and_help_import_no_tensorflow():
    done = subprocess.run([sys.executable, "-c", CHECK, json.dumps(COMMANDS)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["imported"] == [], "a listing or --help imported TensorFlow or Keras"
    for command, (code, text) in zip(COMMANDS, found["outputs"]):
        assert code == 0 and text.strip(), command
    rows = {row["name"]: row for row in json.loads(found["outputs"][0][1])}  # backbones --json
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
