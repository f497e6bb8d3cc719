"""The layout polices itself: which code may import what, and what the docs must name.

Most checks parse the source with ``ast`` instead of importing it, so a rule is enforced on
every module, imported by some test or not. A string naming a module (core/host/manager.py
lists the built-in plugins) is not an import and is allowed.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib
import re
import subprocess
import sys
from pathlib import Path

import typer.main

import clf
from clf.config import RunConfig

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "core"
PLUGINS = REPO / "plugins"

# RunConfig fields that deliberately have no `clf run` flag, with the reason. Empty today.
NO_FLAG: dict[str, str] = {}

# Functions under core/ allowed over MAX_FUNCTION_LINES, with the reason (said beside them too).
MAX_FUNCTION_LINES = 80
LONG_FUNCTIONS: dict[str, str] = {
    "cli/run.py:run": "typer declares each of clf run's ~50 flags as a parameter; the body is short",
}


def modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def imports(source: str, package: str, filename: str = "<source>") -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, module, names) for every import in ``source``, a module of ``package``;
    relative imports resolved to absolute names."""
    parts = package.split(".")
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = parts[:len(parts) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.append((node.lineno, module, tuple(a.name for a in node.names)))
    return found


def imported_modules(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """The imports of a file under core/ (package clf) or plugins/ (clf.plugins)."""
    top, *sub = path.relative_to(REPO).parts[:-1]
    package = ".".join(["clf", *sub] if top == "core" else ["clf", "plugins", *sub])
    return imports(path.read_text(), package, str(path))


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(REPO)}:{line}"


def is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_import_parser_sees_every_form_of_import_and_no_strings():
    # The rules below are only as good as this parser.
    source = ("import rich.console, os\nfrom clf.plugins import heads\nfrom . import images\n"
              "from ..plugins.heads import build\ndef f():\n    import typer\n"
              "BUILTIN = ['clf.plugins.directory_loader']\n")
    assert sorted(m for _, m, _ in imports(source, "clf.data")) == [
        "clf.data", "clf.plugins", "clf.plugins.heads", "os", "rich.console", "typer"]
    assert ("clf.plugins", ("heads",)) in [(m, n) for _, m, n in imports(source, "clf.data")]
    assert "clf.plugins.directory_loader" not in {m for _, m, _ in imported_modules(CORE / "host" / "manager.py")}


def test_core_never_imports_the_default_plugins():
    bad = [f"{where(p, line)} imports {m}" for p in modules(CORE)
           for line, m, names in imported_modules(p)
           if is_under(m, "clf.plugins") or (m == "clf" and "plugins" in names)]
    assert not bad, ("core/ must not depend on the default plugins (they depend on it); move "
                     "what is shared into core/ and export it from clf:\n" + "\n".join(bad))


def test_only_the_cli_imports_rich_or_typer():
    cli = CORE / "cli"
    bad = [f"{where(p, line)} imports {m}" for p in modules(CORE) + modules(PLUGINS)
           if cli not in p.parents
           for line, m, _ in imported_modules(p)
           if is_under(m, "rich") or is_under(m, "typer")]
    assert not bad, ("only clf.cli prints; the engine reports through an Observer and raises "
                     "ClfError:\n" + "\n".join(bad))


def test_default_plugins_import_only_the_public_api():
    public = set(clf.__all__)
    bad = []
    for path in modules(PLUGINS):
        for line, module, names in imported_modules(path):
            if module == "clf":
                bad += [f"{where(path, line)}: 'from clf import {n}', not in clf.__all__"
                        for n in names if n not in public and n != "*"]
            elif is_under(module, "clf") and not is_under(module, "clf.plugins"):
                bad.append(f"{where(path, line)} imports {module}: an internal module")
    assert not bad, ("the default plugins import exactly what a third-party plugin can: "
                     "names from clf (its __all__) and other clf.plugins modules:\n" + "\n".join(bad))


def run_options() -> dict[str, object]:
    """The click options of ``clf run``, by parameter name."""
    from clf.cli import app

    command = typer.main.get_command(app).commands["run"]
    return {p.name: p for p in command.params}


def flag_problems(options: dict[str, object]) -> list[str]:
    """Each RunConfig field without a ``clf run`` flag, or whose flag has another default."""
    from clf.cli.run import _OPTION

    defaults = RunConfig()
    problems = []
    for field in dataclasses.fields(RunConfig):
        if field.name in NO_FLAG:
            continue
        name = _OPTION.get(field.name, field.name)
        option = options.get(name)
        flag = "--" + name.replace("_", "-")
        if option is None or flag not in option.opts:
            problems.append(f"{field.name}: no {flag} flag on clf run")
            continue
        given = () if option.multiple and option.default is None else option.default
        # The flag's default read as RunConfig reads CLI text ("0.875", "h5", "0" included).
        as_config = getattr(RunConfig(**{field.name: given}), field.name)
        if as_config != getattr(defaults, field.name):
            problems.append(f"{field.name}: {flag} defaults to {option.default!r}, "
                            f"RunConfig to {getattr(defaults, field.name)!r}")
    return problems


def test_every_run_config_field_has_a_run_flag_with_its_default():
    assert flag_problems(run_options()) == []
    assert not set(NO_FLAG) - {f.name for f in dataclasses.fields(RunConfig)}, "NO_FLAG names a field that is gone"


def test_the_flag_check_reports_a_drifted_default_and_a_missing_flag():
    options = run_options()
    drifted = copy.copy(options["center_crop"])
    drifted.default = "0.9"
    options["center_crop"] = drifted
    del options["patience"]
    assert flag_problems(options) == ["center_crop: --center-crop defaults to '0.9', RunConfig to 0.875",
                                      "patience: no --patience flag on clf run"]


def readme_layout() -> list[str]:
    """Paths (core/data/doctor.py, core/cli/) listed in the tree of docs/reference/layout.md."""
    section = (REPO / "docs" / "reference" / "layout.md").read_text()
    block = re.search(r"```\n(.*?)```", section, flags=re.S).group(1)
    stack: list[tuple[int, str]] = []  # (indent, folder) of the folders we are inside
    paths = []
    for line in block.splitlines():
        if not line.strip():
            continue
        indent, token = len(line) - len(line.lstrip()), line.split()[0]
        if not (token.endswith("/") or token.endswith(".py")):
            continue  # a description wrapped onto the next line
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = "".join(folder for _, folder in stack) + token
        paths.append(path)
        if token.endswith("/"):
            stack.append((indent, token))
    return paths


def test_readme_layout_parser_reads_the_tree():
    listed = readme_layout()
    assert "core/" in listed and "core/data/" in listed and "core/data/doctor.py" in listed
    assert "core/cli/doctor.py" in listed and "plugins/heads.py" in listed


def test_every_core_module_is_in_the_readme_layout():
    listed = set(readme_layout())
    actual = {str(p.relative_to(REPO)) for p in modules(CORE) if p.name != "__init__.py"}
    actual |= {str(p.relative_to(REPO)) + "/" for p in [CORE, *CORE.rglob("*")]
               if p.is_dir() and (p / "__init__.py").is_file()}
    missing = sorted(actual - listed)
    assert not missing, ("docs/reference/layout.md lacks these (one line each, indented under "
                         "their folder):\n" + "\n".join(missing))
    stale = sorted(p for p in listed if p.startswith("core/") and not (REPO / p).exists())
    assert not stale, "docs/reference/layout.md lists modules that do not exist:\n" + "\n".join(stale)


def test_every_public_name_resolves():
    missing = [name for name in clf.__all__ if not hasattr(clf, name)]
    assert not missing, f"clf.__all__ names that do not resolve: {missing}"
    assert sorted(dir(clf)) == sorted(clf.__all__)


def documented_names() -> list[str]:
    """Dotted clf names docs/plugins.md mentions (clf.DataError, clf.data.files_dataset)."""
    text = (REPO / "docs" / "plugins.md").read_text()
    names = set(re.findall(r"(?<![\w./-])clf(?:\.[A-Za-z_]\w*)+", text))
    return sorted(n for n in names if not is_under(n, "clf.plugins"))  # clf.plugins.*: module paths, also a logger


def resolve(dotted: str):
    """Import the longest module prefix of ``dotted``, then getattr the rest."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            value = getattr(value, attr)
        return value
    raise ImportError(dotted)


def test_documented_names_exist():
    names = documented_names()
    assert "clf.hookimpl" in names and "clf.data.files_dataset" in names  # the scan finds them
    broken = []
    for name in names:
        try:
            resolve(name)
        except (ImportError, AttributeError) as exc:
            broken.append(f"{name}: {exc}")
    assert not broken, "docs/plugins.md names what clf does not have:\n" + "\n".join(broken)


def plugin_api_doc() -> set[str]:
    """The names in the second column of docs/plugins.md's plugin API table."""
    text = (REPO / "docs" / "plugins.md").read_text()
    section = text[text.index("\n## The plugin API"):].split("\n## ", 2)[1]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ")]
    assert rows and rows[0][1] == "names from `clf`", "the plugin API table lost its 'names from `clf`' column"
    return {name for row in rows[2:] for name in re.findall(r"`(\w+)`", row[1])}


def test_plugin_api_doc_lists_public_names_and_everything_the_plugins_use():
    documented = plugin_api_doc()
    # What the issue names as the plugin API, whether or not a default plugin uses it today.
    assert {"hookimpl", "ClfError", "DataError", "DatasetBundle", "Split", "ImageSize", "files_dataset",
            "decode_image", "is_image_file", "IMAGE_SUFFIXES", "register_preprocess", "Predictor",
            "KerasPredictor", "atomic_path", "WeightsFile", "keras_downloads", "QUANTIZE_MODES"} <= documented
    assert sorted(documented - set(clf.__all__)) == [], "documented as plugin API but not in clf.__all__"
    used = {name for path in modules(PLUGINS) for _, module, names in imported_modules(path)
            if module == "clf" for name in names}
    assert sorted(used - documented) == [], "the default plugins use names docs/plugins.md does not list"


def test_config_and_cli_import_no_tensorflow_or_training_code():
    # `clf --help` and a config check stay fast: the CLI reads RunConfig's defaults at
    # import, so RunConfig must not pull in training code (or TensorFlow through it).
    code = ("import sys, clf.config, clf.cli; "
            "print(sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('clf.train')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]", loaded


def test_no_function_in_core_is_over_80_lines_unless_said_why():
    long = {}
    for path in modules(CORE):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if node.end_lineno - first + 1 > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(CORE).as_posix()}:{node.name}"] = node.end_lineno - first + 1
    assert set(long) == set(LONG_FUNCTIONS), long  # a new long function: split it, or say why here
