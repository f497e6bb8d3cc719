"""A broken installed plugin (tests/plugin_packages/clf-broken-plugins) is skipped with one
warning line naming it and its error, and everything else works; --strict-plugins or
CLF_STRICT_PLUGINS=1 makes it an error. CLF_LOAD_PLUGINS picks plugins, CLF_TRACE_PLUGINS
logs hook calls."""

import json
import logging
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from clf import PluginError, PluginHost, hookimpl
from clf.cli import app
from conftest import SMALL_BACKBONE, SMALL_SIZE

runner = CliRunner()

# entry point -> what its one warning line must say
BROKEN = {
    "broken_import": ["(clf-broken-plugins 6.6.6)", "failed to import: ModuleNotFoundError",
                      "clf_missing_dependency_xyz"],
    "broken_hook": ["raised RuntimeError in hook 'register_heads': kaput in register_heads"],
    "broken_argument": ["implements hook 'register_backbones' with argument 'registrar'",
                        "expected register_backbones(register)"],
    "broken_name": ["unknown hook 'register_exporter'", "Did you mean 'register_exporters'?"],
    "broken_duplicate": ["Backbone 'vgg16' is provided by both plugin 'clf.plugins.keras_applications' "
                         "and plugin 'broken_duplicate'"],
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_broken_plugin_is_skipped_with_a_message_naming_it(installed_plugins, name):
    host = PluginHost(only=[name])
    assert [s.name for s in host.skipped] == [name] and name not in host.infos
    line = host.warnings[0]
    assert "\n" not in line and line.startswith(f"skipped plugin {name!r} (clf-broken-plugins 6.6.6): ")
    for fragment in BROKEN[name]:
        assert fragment in line
    # Nothing of it is left behind, even what it registered before failing.
    assert "half_registered" not in host.heads and "never_here" not in host.backbones
    assert host.backbones.get("vgg16").plugin == "clf.plugins.keras_applications"
    with pytest.raises(PluginError, match=f"'{name}'.*Strict plugin loading is on"):
        PluginHost(only=[name], strict=True)


def test_cli_run_goes_on_with_one_warning_line_per_broken_plugin(installed_plugins, image_folder, tmp_path):
    res = runner.invoke(app, ["run", "--backbone", SMALL_BACKBONE, "--data", str(image_folder), "--epochs", "1",
                              "--image-size", str(SMALL_SIZE), "--weights", "none", "--no-augment",
                              "--output", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == len(BROKEN)
    for name in BROKEN:
        assert sum(f"skipped plugin {name!r}" in w for w in warnings) == 1
    assert (tmp_path / "run" / "model.h5").is_file()
    assert "Traceback" not in res.output

    listing = json.loads(runner.invoke(app, ["plugins", "--json"]).stdout)
    skipped = {r["name"]: r for r in listing if r["status"] == "skipped"}
    assert set(skipped) == set(BROKEN)
    assert skipped["broken_hook"]["distribution"] == "clf-broken-plugins" and "kaput" in skipped["broken_hook"]["error"]
    loaded = {r["name"] for r in listing if r["status"] == "loaded"}
    assert {"scratch_cnn", "csv", "clf.plugins.heads"} <= loaded


def test_strict_plugins_flag_and_env_make_a_broken_plugin_an_error(installed_plugins, monkeypatch):
    monkeypatch.setenv("CLF_LOAD_PLUGINS", "broken_hook,scratch_cnn")
    assert runner.invoke(app, ["heads"]).exit_code == 0
    res = runner.invoke(app, ["--strict-plugins", "heads"])
    assert res.exit_code == 1
    assert "Error:" in res.stderr and "'broken_hook' raised RuntimeError" in res.stderr
    assert "--strict-plugins" in res.stderr and "Traceback" not in res.output
    monkeypatch.setenv("CLF_STRICT_PLUGINS", "1")
    res = runner.invoke(app, ["heads"])
    assert res.exit_code == 1 and "'broken_hook'" in res.stderr


def test_load_plugins_allowlist(installed_plugins, monkeypatch):
    monkeypatch.setenv("CLF_LOAD_PLUGINS", "")
    host = PluginHost()
    assert all(i.builtin for i in host.infos.values()) and not host.skipped and not host.warnings
    assert PluginHost(only="csv").loaders.get("csv").plugin == "csv"
    host = PluginHost(only=["clf-scratch-cnn", "scratch-cnn-typo"])  # distribution names work too
    assert {i.name for i in host.infos.values() if not i.builtin} == {"scratch_cnn"}
    assert host.warnings == [
        "CLF_LOAD_PLUGINS names 'scratch-cnn-typo', which is no installed clf plugin (installed: "
        "broken_argument, broken_duplicate, broken_hook, broken_import, broken_name, csv, "
        "scratch_cnn); check the spelling."
    ]


def test_explicit_plugin_is_loaded_even_when_the_allowlist_is_empty(installed_plugins, tmp_path):
    (tmp_path / "extra.py").write_text(
        "from clf import hookimpl\n\n@hookimpl\ndef register_heads(register):\n"
        "    register('extra_head', lambda f, n, **k: None)\n")
    host = PluginHost(plugins=[str(tmp_path / "extra.py")], only="")
    assert "extra_head" in host.heads


def test_trace_logs_each_hook_call(installed_plugins, monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger="clf.plugins"):
        PluginHost(only=["scratch_cnn", "broken_hook"], trace=True)
    messages = [r.getMessage() for r in caplog.records]
    assert "hook register_backbones: calling plugin 'scratch_cnn'" in messages
    assert any(m.startswith("hook register_backbones: plugin 'scratch_cnn' registered scratch_cnn in") for m in messages)
    assert "hook register_heads: calling plugin 'broken_hook'" in messages
    assert any(m.startswith("skipped plugin 'broken_hook'") for m in messages)
    assert "not loading plugin 'csv' (clf-csv-loader): not named in CLF_LOAD_PLUGINS" in messages
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="clf.plugins"):
        PluginHost(only=["scratch_cnn"])  # tracing is off unless asked for
    assert not caplog.records

    monkeypatch.setenv("CLF_TRACE_PLUGINS", "1")
    monkeypatch.setenv("CLF_LOAD_PLUGINS", "csv")
    res = runner.invoke(app, ["loaders"])
    assert res.exit_code == 0
    assert "plugin trace: hook register_data_loaders: calling plugin 'csv'" in res.stderr


def test_unmarked_hook_function_is_named():
    class Forgot:
        def register_heads(self, register):  # no @hookimpl
            register("never", lambda f, n, **k: None)

    with pytest.raises(PluginError, match="'forgot' defines 'register_heads' but it is not marked.*@clf.hookimpl"):
        PluginHost(only="").register(Forgot(), name="forgot")


def test_real_subprocess_lists_heads_despite_broken_plugins(installed_plugins):
    done = subprocess.run([sys.executable, "-m", "clf.cli", "heads", "--json"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert {r["name"] for r in json.loads(done.stdout)} == {"softmax", "sigmoid"}  # the built-in heads
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: skipped plugin")]
    assert len(warnings) == len(BROKEN)
