"""``clf new-plugin``: generated packages install, pass their own tests and are listed."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from clf.cli import app
from clf.host.manager import reset_host
from clf.host.scaffold import KINDS
from pip_target import pip_install

runner = CliRunner()


@pytest.mark.slow
def test_new_plugin_of_every_kind_installs_passes_its_test_and_is_listed(tmp_path, monkeypatch):
    src = tmp_path / "src"
    for kind in KINDS:
        res = runner.invoke(app, ["new-plugin", f"my-{kind}", "--kind", kind, "--output", str(src)])
        assert res.exit_code == 0, res.output
        root = src / f"clf-my-{kind}"
        assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == {
            "pyproject.toml", f"clf_my_{kind}.py", "README.md", f"tests/test_my_{kind}.py"}
        assert f'my_{kind} = "clf_my_{kind}"' in (root / "pyproject.toml").read_text()

    site = tmp_path / "site"
    pip_install([src / f"clf-my-{kind}" for kind in KINDS], site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    env.pop("CLF_LOAD_PLUGINS", None)
    # Each package's own test, run as its author would (from its folder, clf installed).
    tests = [str(src / f"clf-my-{kind}" / "tests") for kind in KINDS]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{2 * len(KINDS)} passed" in done.stdout

    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("CLF_LOAD_PLUGINS", raising=False)
    reset_host()
    try:
        listing = {r["name"]: r for r in json.loads(runner.invoke(app, ["plugins", "--json"]).stdout)}
    finally:
        reset_host()
    hooks = {"backbone": "register_backbones", "head": "register_heads", "loader": "register_data_loaders",
             "exporter": "register_exporters"}
    for kind in KINDS:
        row = listing[f"my_{kind}"]
        assert (row["distribution"], row["version"], row["status"]) == (f"clf-my-{kind}", "0.1.0", "loaded")
        assert row["hooks"] == [hooks[kind]] and list(row["components"].values()) == [[f"my_{kind}"]]


def test_new_plugin_refuses_a_bad_name_kind_or_existing_folder(tmp_path):
    res = runner.invoke(app, ["new-plugin", "9lives", "--kind", "head", "--output", str(tmp_path)])
    assert res.exit_code == 2 and "Plugin name '9lives' is not usable" in res.output
    res = runner.invoke(app, ["new-plugin", "ok", "--kind", "optimizer", "--output", str(tmp_path)])
    assert res.exit_code == 2 and "expected one of backbone, head, loader, exporter" in res.output
    assert runner.invoke(app, ["new-plugin", "clf-ok", "--kind", "head", "--output", str(tmp_path)]).exit_code == 0
    res = runner.invoke(app, ["new-plugin", "ok", "--kind", "head", "--output", str(tmp_path)])
    assert res.exit_code == 2 and "already exists" in res.output
