"""docs/plugins.md documents every hook, every hook has a contract test, and the tutorial's
two files work as written: installed, listed, trained with."""

import ast
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clf import hookspecs
from clf.cli import app
from clf.host.manager import HOOKS, reset_host
from conftest import SMALL_SIZE
from pip_target import pip_install

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "plugins.md"


def hookspec_names() -> list[str]:
    return sorted(n for n, f in vars(hookspecs).items() if hasattr(f, f"{hookspecs.PROJECT_NAME}_spec"))


def doc_sections() -> dict[str, str]:
    """Hook name -> the text of its '### `name`' section."""
    parts = re.split(r"^### `(\w+)`\s*$", DOC.read_text(), flags=re.M)
    return {parts[i]: parts[i + 1].split("\n## ")[0] for i in range(1, len(parts), 2)}


def test_every_hookspec_is_collected_by_the_host():
    assert hookspec_names() == sorted(HOOKS), "a hookspec the plugin host does not collect (HOOKS)"


@pytest.mark.parametrize("hook", hookspec_names())
def test_every_hookspec_has_a_reference_section(hook):
    sections = doc_sections()
    assert hook in sections, f"docs/plugins.md has no '### `{hook}`' reference section"
    for part in ("**Arguments.**", "**Returns.**", "**Contract.**"):
        assert part in sections[hook], f"the {hook} section in docs/plugins.md lacks {part}"
    assert f"register(name, " in sections[hook]


@pytest.mark.parametrize("hook", hookspec_names())
def test_every_hookspec_has_a_test(hook):
    names = set()
    for path in (REPO / "tests").glob("test_*.py"):
        names |= {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}
    assert f"test_hook_{hook}" in names, f"no test named test_hook_{hook} in tests/"


def code_after(marker: str, lang: str) -> str:
    text = DOC.read_text()
    start = text.index(marker)
    return re.search(rf"```{lang}\n(.*?)```", text[start:], flags=re.S).group(1)


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
