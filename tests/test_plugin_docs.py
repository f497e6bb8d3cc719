"""The hook contract is written once, in clf.hookspecs, and the docs render it: each hook's
``register(...)`` signature names exactly the fields of its registry dataclass and documents
each one, states its contract and has a contract test; the hook reference page renders every
hook; and the plugin guide's examples work as written (the tutorial's two files installed,
listed, trained with; the callback plugin registered)."""

import ast
import dataclasses
import inspect
import json
import re
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clf import hookspecs
from clf.cli import app
from clf.host.manager import HOOKS, reset_host
from clf.host.registry import _FN_FIELD, Backbone, CallbackFactory, Registry
from conftest import SMALL_SIZE
from pip_target import pip_install

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "plugins.md"
HOOK_PAGE = REPO / "docs" / "reference" / "hooks.md"
COMMON = {"aliases", "description"}  # every component's; documented once, in the module docstring


def hookspec_names() -> list[str]:
    return sorted(n for n, f in vars(hookspecs).items() if hasattr(f, f"{hookspecs.PROJECT_NAME}_spec"))


def register_signature(doc: str) -> tuple[str, list[str]]:
    """The ``register(name, fn, *, kw=..., ...)`` line of a hookspec docstring: fn's name and
    the keywords, in order."""
    match = re.search(r"``register\((.*?)\)``", doc, flags=re.S)
    assert match, "no ``register(...)`` signature in the docstring"
    args = ast.parse(f"def register({match.group(1)}): pass").body[0].args
    positional = [a.arg for a in args.args]
    assert positional[0] == "name" and len(positional) == 2, positional
    return positional[1], [a.arg for a in args.kwonlyargs]


def contract_problems(doc: str, component: type) -> list[str]:
    """How a hookspec docstring disagrees with the dataclass its registry stores."""
    fn, keywords = register_signature(doc)
    fields = [f.name for f in dataclasses.fields(component) if f.name not in ("name", "plugin")]
    problems = []
    if fn != _FN_FIELD[component]:
        problems.append(f"register's function is {fn!r}, the dataclass field {_FN_FIELD[component]!r}")
    fields.remove(_FN_FIELD[component])
    for missing in sorted(set(fields) - set(keywords)):
        problems.append(f"field {missing!r} is not in the register(...) signature")
    for extra in sorted(set(keywords) - set(fields)):
        problems.append(f"register(...) names {extra!r}, which {component.__name__} has no field for")
    for kw in [fn, *keywords]:
        if kw not in COMMON and not re.search(rf"^\s*- (``\w+``, )*``{kw}(``|\()", doc, flags=re.M):
            problems.append(f"{kw!r} has no '- ``{kw}``' entry saying what it is")
    return problems


def test_every_hookspec_is_collected_by_the_host():
    assert hookspec_names() == sorted(HOOKS), "a hookspec the plugin host does not collect (HOOKS)"


@pytest.mark.parametrize("hook", hookspec_names())
def test_every_register_keyword_is_a_registry_field_and_documented(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook))
    component = HOOKS[hook][1]
    assert contract_problems(doc, component) == [], f"clf.hookspecs.{hook} and clf.host.registry disagree"
    prose = " ".join(doc.split())
    assert "Contract:" in prose and f"Tested by ``test_hook_{hook}``" in prose


def test_the_comparison_finds_a_field_left_out_and_one_made_up():
    doc = inspect.getdoc(hookspecs.register_backbones)
    assert contract_problems(doc.replace(" imagenet_file=None,", ""), Backbone) == [
        "field 'imagenet_file' is not in the register(...) signature"]
    made_up = doc.replace("trainable=False)``", "trainable=False, imagenet_url=None)``")
    assert contract_problems(made_up, Backbone) == [
        "register(...) names 'imagenet_url', which Backbone has no field for",
        "'imagenet_url' has no '- ``imagenet_url``' entry saying what it is"]


def test_the_common_options_are_documented_once():
    doc = inspect.getdoc(hookspecs)
    for kw in ("name", *sorted(COMMON)):
        assert re.search(rf"^- ``{kw}``", doc, flags=re.M), f"the clf.hookspecs docstring does not explain {kw!r}"


@pytest.mark.parametrize("hook", hookspec_names())
def test_every_hookspec_has_a_test(hook):
    names = set()
    for path in (REPO / "tests").glob("test_*.py"):
        names |= {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}
    assert f"test_hook_{hook}" in names, f"no test named test_hook_{hook} in tests/"


def test_the_hook_reference_page_renders_every_hook_and_registry():
    page = HOOK_PAGE.read_text()
    assert "::: clf.hookspecs" in page and "::: clf.host.registry" in page
    listed = set(re.findall(r"^\s+- (\w+)$", page, flags=re.M))
    assert set(hookspec_names()) <= listed, "docs/reference/hooks.md leaves out a hook"
    assert {c.__name__ for _, c, _, _ in HOOKS.values()} <= listed, "docs/reference/hooks.md leaves out a registry"
    assert not re.search(r"register\(name, \w+, \*,", GUIDE.read_text()), "the plugin guide repeats a register signature"


def code_after(marker: str, lang: str) -> str:
    text = GUIDE.read_text()
    start = text.index(marker)
    return re.search(rf"```{lang}\n(.*?)```", text[start:], flags=re.S).group(1)


def test_the_guide_s_callback_plugin_registers(tmp_path):
    module = types.ModuleType("csv_logger_plugin")
    exec(compile(code_after("### A training callback", "python"), "plugins.md", "exec"), module.__dict__)
    registry = Registry("callback", "plugins", CallbackFactory)
    module.register_callbacks(registry.callback("csv_logger_plugin"))
    item = registry.get("csv_logger")
    assert item.description == "Keras CSVLogger in the run folder"
    callback = item.make(None, tmp_path)
    assert type(callback).__name__ == "CSVLogger"


def test_tutorial_plugin_installs_is_listed_and_trains(tmp_path, monkeypatch, image_folder):
    package = tmp_path / "clf-tiny-cnn"
    package.mkdir()
    (package / "clf_tiny_cnn.py").write_text(code_after("`clf_tiny_cnn.py`, the plugin", "python"))
    (package / "pyproject.toml").write_text(code_after("`pyproject.toml`, which makes it", "toml"))
    site = tmp_path / "site"
    pip_install([package], site)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("CLF_LOAD_PLUGINS", "tiny_cnn")
    reset_host()
    try:
        runner = CliRunner()
        row = next(r for r in json.loads(runner.invoke(app, ["plugins", "--json"]).stdout) if r["name"] == "tiny_cnn")
        assert (row["distribution"], row["version"], row["components"]) == ("clf-tiny-cnn", "0.1.0", {"backbones": ["tiny_cnn"]})
        res = runner.invoke(app, ["run", "--backbone", "tiny_cnn", "--weights", "none", "--data", str(image_folder),
                                  "--epochs", "1", "--image-size", str(SMALL_SIZE), "--output", str(tmp_path / "run")])
        assert res.exit_code == 0, res.output
        assert (tmp_path / "run" / "model.h5").is_file()
    finally:
        reset_host()
