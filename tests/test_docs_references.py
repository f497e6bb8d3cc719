"""Every file path, clf module, clf command and clf option that the README, the docs site and
the code's comments and docstrings name exists.

Scanned: README.md and docs/**/*.md (all their text), and the comments and docstrings of the
Python files (and the comments of the shell scripts) under core/, plugins/, benchmarks/,
examples/ and tests/. Checked:

- a repository path (``core/train/fit.py``, ``docs/train.md``, ``tests/test_x.py::test_y``)
  exists (and so does the test it names);
- a dotted name ``clf.x.y`` resolves by path: ``core/x/y.py`` or ``core/x/y/__init__.py``
  (``clf.plugins.x``: ``plugins/x.py``), then names defined in that module (by its source:
  nothing is imported), or one of the names ``import clf`` gives;
- ``clf COMMAND`` in code (Markdown code, or quoted in a comment) is a command of the typer
  app, ``clf weights fetch`` a command of its group;
- each ``--flag`` after ``clf COMMAND`` in Markdown code, and each option in the train
  guide's option table, is an option of that command.

Building the click command tree imports no TensorFlow, so the whole scan takes about a second.
"""

from __future__ import annotations

import ast
import functools
import io
import re
import tokenize
from pathlib import Path

import typer

import clf
from clf.cli import app

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("core", "plugins", "benchmarks", "examples", "tests")
TOP_DIRS = ("core", "plugins", "benchmarks", "examples", "tests", "docs")

# (file the reference is in, the reference) -> why it is not a reference to this repository.
ALLOWED = {
    ("docs/plugins.md", "tests/test_my_cnn.py"):
        "a file inside the package clf new-plugin writes, not in this repository",
}


# --- what exists -------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def cli():
    """The click command typer builds for ``clf`` (typer's own copy of click)."""
    return typer.main.get_command(app)


def command(words: list[str]):
    """The deepest command ``words`` name (``["weights", "fetch"]``) and the words used."""
    cmd, used = cli(), []
    for word in words:
        sub = getattr(cmd, "commands", {}).get(word)
        if sub is None:
            break
        cmd, used = sub, [*used, word]
    return (cmd if used else None), used


def options(cmd) -> set[str]:
    names = {"--help"}
    for param in cmd.params:
        if param.param_type_name == "option":
            names |= {o for o in [*param.opts, *param.secondary_opts] if o.startswith("--")}
    return names


@functools.lru_cache(maxsize=None)
def defined_names(path: Path) -> frozenset[str] | None:
    """Names a module defines at top level (None: it has a module __getattr__: anything goes)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == "__getattr__":
                return None
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.If, ast.Try)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.FunctionDef, ast.ClassDef)):
                    names.add(sub.name)
                elif isinstance(sub, (ast.Import, ast.ImportFrom)):
                    names |= {(a.asname or a.name).split(".")[0] for a in sub.names}
                elif isinstance(sub, ast.Assign):
                    names |= {n.id for t in sub.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return frozenset(names)


def module_path(parts: list[str]) -> Path | None:
    base = REPO / ("plugins" if parts[:1] == ["plugins"] else "core")
    rest = parts[1:] if parts[:1] == ["plugins"] else parts
    for candidate in (base.joinpath(*rest).with_suffix(".py"), base.joinpath(*rest, "__init__.py")):
        if rest and candidate.is_file():
            return candidate
    return base / "__init__.py" if not rest else None


def dotted_problem(name: str) -> str | None:
    """Why ``clf.a.b.c`` does not resolve, or None."""
    parts = name.split(".")[1:]
    # The longest prefix that is a module; what follows must be defined in it.
    for cut in range(len(parts), -1, -1):
        path = module_path(parts[:cut])
        if path is None:
            continue
        rest = parts[cut:]
        if not rest:
            return None
        # clf itself loads its names lazily (a module __getattr__): they are clf.__all__.
        names = frozenset([*clf.__all__, *vars(clf)]) if path == REPO / "core" / "__init__.py" else defined_names(path)
        if names is None or rest[0] in names:
            return None  # deeper attributes (a class's method) are not checked
        return f"{'.'.join(['clf', *parts[:cut]])} ({path.relative_to(REPO)}) defines no {rest[0]!r}"
    return "no such module"


# --- where references are ----------------------------------------------------------------

def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def source_files() -> list[Path]:
    files = []
    for top in SOURCE_DIRS:
        files += [p for p in (REPO / top).rglob("*") if p.suffix in (".py", ".sh") and p.is_file()
                  and "__pycache__" not in p.parts and ".venv" not in p.parts]
    return sorted(files)


@functools.lru_cache(maxsize=None)
def prose_of(path: Path) -> str:
    """A source file's comments and docstrings, one per line block."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".sh":
        return "\n".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line)
    chunks = [tok.string for tok in tokenize.generate_tokens(io.StringIO(text).readline)
              if tok.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                chunks.append(doc)
        # Attribute docstrings: a string statement right after an assignment.
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for before, stmt in zip(body, body[1:]):
                if (isinstance(before, (ast.Assign, ast.AnnAssign)) and isinstance(stmt, ast.Expr)
                        and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)):
                    chunks.append(stmt.value.value)
    return "\n".join(chunks)


def markdown_code(text: str) -> list[str]:
    """Fenced blocks (backslash continuations joined) and inline code spans. A block without
    a language is output: only its ``$ `` lines are commands."""
    code = []
    for lang, block in re.findall(r"^```([^\n]*)\n(.*?)^```", text, flags=re.S | re.M):
        lines = block.replace("\\\n", " ").splitlines()
        code += lines if lang.strip() else [line for line in lines if line.lstrip().startswith("$ ")]
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    code += re.findall(r"`([^`\n]+)`", prose)
    return code


PATH = re.compile(r"(?<![\w./-])((?:%s)/[\w./-]*[\w/])(?:::(\w+))?" % "|".join(TOP_DIRS))
DOTTED = re.compile(r"(?<![\w./-])(clf(?:\.[A-Za-z_]\w*)+)")
COMMAND = re.compile(r"(?:^|[\s;&|(`'\"$])(?<!from )(?<!import )clf((?:\s+--[\w-]+)*)\s+([a-z][\w-]*(?:\s+[a-z][\w-]*)?)(.*)")
FILE_SUFFIXES = (".py", ".md", ".sh", ".toml", ".json", ".ipynb", ".yml", ".html", ".txt", ".csv", ".png", ".cfg")


def path_problems(where: str, text: str) -> list[str]:
    problems = []
    for match in PATH.finditer(text):
        path, test = match.group(1).rstrip("."), match.group(2)
        if any(c in path for c in "*<>") or (where, path) in ALLOWED:
            continue
        if not (path.endswith("/") or path.endswith(FILE_SUFFIXES)):
            continue  # a path-looking phrase (core/ and plugins/ as words), not a file
        target = REPO / path
        if not target.exists():
            problems.append(f"{where}: {path} does not exist")
        elif test and f"def {test}(" not in target.read_text(encoding="utf-8"):
            problems.append(f"{where}: {path} has no {test}")
    return problems


def dotted_problems(where: str, text: str) -> list[str]:
    problems = []
    for match in DOTTED.finditer(text):
        name = match.group(1).rstrip(".")
        if (where, name) in ALLOWED or name.endswith((".py", ".toml", ".json", ".log")):
            continue
        problem = dotted_problem(name)
        if problem:
            problems.append(f"{where}: {name}: {problem}")
    return problems


def command_problems(where: str, code_lines: list[str], check_flags: bool) -> list[str]:
    problems = []
    for line in code_lines:
        line = line.split(" #", 1)[0]
        for match in COMMAND.finditer(line):
            global_flags, words, rest = match.group(1).split(), match.group(2).split(), match.group(3)
            if (where, f"clf {' '.join(words)}") in ALLOWED:
                continue
            cmd, used = command(words)
            if cmd is None:
                problems.append(f"{where}: 'clf {words[0]}' is not a clf command")
                continue
            if not check_flags:
                continue
            for flag in global_flags:
                if flag not in options(cli()):
                    problems.append(f"{where}: {flag} is not a global option of clf")
            tail = " ".join(words[len(used):]) + " " + re.split(r"\s(?:\||;|&&|\|\|)\s", rest)[0]
            for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", tail):
                if flag not in options(cmd):
                    problems.append(f"{where}: {flag} is not an option of 'clf {' '.join(used)}'")
    return problems


def option_table_problems() -> list[str]:
    """The train guide's option table: every option there is one of clf run's."""
    text = (REPO / "docs" / "train.md").read_text(encoding="utf-8")
    run = command(["run"])[0]
    problems = []
    for row in re.findall(r"^\| (`--.*?) \|", text, flags=re.M):
        for flag in re.findall(r"--[a-z][\w-]*", row):
            if flag not in options(run):
                problems.append(f"docs/train.md: option table: {flag} is not an option of 'clf run'")
    return problems


def all_problems() -> list[str]:
    problems = []
    for path in markdown_files():
        where, text = str(path.relative_to(REPO)), path.read_text(encoding="utf-8")
        problems += path_problems(where, text) + dotted_problems(where, text)
        problems += command_problems(where, markdown_code(text), check_flags=True)
    for path in source_files():
        if path == Path(__file__).resolve():
            continue  # its docstring and self-test name made-up references on purpose
        where, text = str(path.relative_to(REPO)), prose_of(path)
        problems += path_problems(where, text) + dotted_problems(where, text)
        quoted = re.findall(r"``([^`]+)``|`([^`\n]+)`|'(clf [^'\n]+)'|\"(clf [^\"\n]+)\"", text)
        problems += command_problems(where, ["".join(q) for q in quoted], check_flags=False)
    return sorted(set(problems + option_table_problems()))


# --- the tests ---------------------------------------------------------------------------

def test_every_path_module_command_and_flag_named_in_docs_and_comments_exists():
    problems = all_problems()
    assert not problems, "stale references (fix them, or allow one in ALLOWED with the reason):\n" + \
        "\n".join(problems)


def test_the_checks_catch_what_they_are_for():
    assert path_problems("x", "see core/verify.py and core/train/fit.py") == ["x: core/verify.py does not exist"]
    assert path_problems("x", "tests/test_layout.py::test_nope") == ["x: tests/test_layout.py has no test_nope"]
    assert dotted_problems("x", "clf.metrics and clf.report.metrics.evaluation_report") == [
        "x: clf.metrics: clf (core/__init__.py) defines no 'metrics'"]
    assert dotted_problems("x", "clf.host.registry.Nope") == [
        "x: clf.host.registry.Nope: clf.host.registry (core/host/registry.py) defines no 'Nope'"]
    assert dotted_problems("x", "clf.run, clf.Predictor.decode, clf.plugins.tflite_exporter") == []
    assert command_problems("x", ["clf trian --data d"], True) == ["x: 'clf trian' is not a clf command"]
    assert command_problems("x", ["clf run --data d --epoch 3 | tee log", "clf weights fetch vgg16 --bogus"],
                            True) == ["x: --epoch is not an option of 'clf run'",
                                      "x: --bogus is not an option of 'clf weights fetch'"]
    assert command_problems("x", ["clf --verbose run --data d && clf predict r --top-k 2"], True) == []


def test_every_allowance_is_still_needed():
    texts = {str(p.relative_to(REPO)): p.read_text(encoding="utf-8") for p in markdown_files()}
    texts |= {str(p.relative_to(REPO)): prose_of(p) for p in source_files()}
    unused = [key for key in ALLOWED if key[1] not in texts.get(key[0], "")]
    assert not unused, f"allowances for references that are gone: {unused}"
