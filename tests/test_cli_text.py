"""What the CLI says to a new user: listings whole at 80 columns with the train guide's columns,
`clf run --help` in panels without type tags, --augment saying when it acts, "did you
mean" for every unknown name, and a new-plugin next step that works as printed."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import clf
from clf.cli import app

runner = CliRunner()
TRAIN_GUIDE = Path(__file__).resolve().parents[1] / "docs" / "train.md"


@pytest.fixture
def clf_at(monkeypatch):
    """``clf_at(width, *args)``: the CLI's standard output on a terminal ``width`` columns
    wide, run in process (no TensorFlow start per call; tests/test_cli.py runs the real
    executable). A fresh ``clf`` reads COLUMNS when it makes its consoles; these were made
    at import, where pytest-xdist had set COLUMNS=80, so they are sent back to measuring."""
    cli = importlib.import_module("clf.cli.app")
    for console in (cli.out, cli.err):
        monkeypatch.setattr(console, "_width", None)  # rich: None = read COLUMNS when measuring

    def run(width: int, *args: str) -> str:
        done = runner.invoke(app, list(args), env={"COLUMNS": str(width)})
        assert done.exit_code == 0, done.output
        return done.stdout

    return run


def test_listings_fit_80_columns_with_every_name_whole(clf_at):
    names = {kind: [row["name"] for row in json.loads(runner.invoke(app, [kind, "--json"]).output)]
             for kind in ("backbones", "heads", "loaders", "exporters")}
    for kind, expected in names.items():
        text = clf_at(80, kind)
        lines = text.splitlines()
        assert max(map(len, lines)) <= 80, kind
        cells = {word for line in lines for word in line.split()}
        assert set(expected) <= cells, (kind, sorted(set(expected) - cells))  # no name cut in two
    backbones = clf_at(80, "backbones")
    header = set(backbones.split("───")[0].split())  # "input size" is on two lines
    assert {"name", "input", "size", "params", "features", "preprocessing"} <= header  # the train guide's columns
    assert "backbones from built-in (52)" in backbones and "alias mobilenet_v2" in backbones
    assert "mobilenet_v2_035 224x224 410K 1280 mobilenet_v2" in " ".join(backbones.split())
    wide = clf_at(140, "backbones")
    assert "description" in wide and "modernised ResNet" in wide  # room for it: shown
    plugins = clf_at(80, "plugins")
    assert max(map(len, plugins.splitlines())) <= 80
    words = {w for line in plugins.splitlines() for w in line.split()}
    assert {"register_data_loaders", "tensorboard_callback", "savedmodel_exporter"} <= words


def test_train_guide_promises_the_listing_columns():
    text = TRAIN_GUIDE.read_text()
    assert "clf backbones          # name (aliases below it), input size, params, features, preprocessing" in text


def test_run_help_is_in_panels_without_type_tags(clf_at):
    text = clf_at(100, "run", "--help")
    panels = re.findall(r"╭─ (\w+) ─", text)
    assert panels == ["Data", "Model", "Training", "Export", "Runtime"], panels
    assert not re.search(r"<(bool|str|int|float|path|list\[str\])>", text), text
    for option in ("--data", "--backbone", "--epochs", "--export", "--verbose", "--help", "--augment-copies"):
        assert option in text
    assert "FRACTION" in text and "imagenet|none|FILE" in text


def test_augment_says_when_it_acts_in_help_and_train_guide(clf_at):
    help_text = " ".join(clf_at(200, "run", "--help").split())
    augment = help_text[help_text.index("--augment --no-augment"):help_text.index("Augmented copies of each")]
    assert "Acts only where training sees images" in augment and "--fine-tune-layers" in augment
    assert "K augmented copies" in augment and "changes nothing" in augment
    row = next(line for line in TRAIN_GUIDE.read_text().splitlines() if line.startswith("| `--augment/--no-augment`"))
    assert "--augment-copies" in row and "--fine-tune-layers" in row and "changes nothing" in row


def test_every_unknown_name_suggests_the_closest(host):
    for registry, typo, meant in ((host.backbones, "mobilenetv2_035", "mobilenet_v2_035"),
                                  (host.backbones, "efficientnetb0", "efficientnet_b0"),
                                  (host.heads, "softmx", "softmax"), (host.loaders, "directroy", "directory"),
                                  (host.exporters, "saved-modle", "saved_model")):
        with pytest.raises(clf.UnknownComponentError, match=f"Did you mean '{meant}'"):
            registry.get(typo)
    with pytest.raises(clf.UnknownComponentError) as info:
        host.backbones.get("vgg61")
    assert "Did you mean 'vgg19' or 'vgg16'?" in str(info.value) and "52 are available" in str(info.value)
    with pytest.raises(clf.ConfigError, match="For 'batchsize', did you mean 'batch_size'"):
        clf.RunConfig.from_mapping({"batchsize": 4})
    with pytest.raises(clf.ConfigError, match="Did you mean 'mirrored'"):
        clf.RunConfig(strategy="mirored")


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="needs setuptools to build offline")
def test_new_plugin_next_step_installs_as_printed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["new-plugin", "mlp2", "--kind", "head"])
    assert res.exit_code == 0, res.output
    line = next(line for line in res.output.splitlines() if line.startswith("next: "))
    target = re.match(r"next: pip install (\S+) && clf plugins", line).group(1)
    assert target == os.path.join(".", "clf-mlp2")  # a folder to pip, not a name on the index
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                           "--no-build-isolation", "--disable-pip-version-check", "--target", "site", target],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "site").glob("clf_mlp2*"))


def test_serve_help_names_an_artifact_for_format_not_predicts_table_words(clf_at):
    text = " ".join(clf_at(200, "serve", "--help").split())
    assert "--format NAME Which artifact" in text and "table|csv|json" not in text
    assert "table|csv|json" in clf_at(200, "predict", "--help")
