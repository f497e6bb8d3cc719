"""The stage graph: which package of clf may import which, checked on every import in
core/ and plugins/ (module level, inside functions and under TYPE_CHECKING alike).

Each folder under core/ is a stage; the top-level modules (errors, config, files, logs,
events, hookspecs, ...) are the base every stage may use. A stage imports only stages below
it, so the inference core cannot come to depend on training, nor the engine on the CLI.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# importer -> the stages it may import (besides the base and itself)
ALLOWED = {
    "base": {"data"},  # config checks preprocessing modes; clf.preprocessing is an old import path
    "data": set(),
    "host": {"data"},  # registries hold ImageSize-aware backbone records
    "infer": {"data"},  # decoding and the classifier's Preprocess layer
    "artifacts": {"data", "host", "infer", "train"},  # train: only the quantization ladder's head solver (NAMED)
    "report": {"data", "infer", "artifacts"},
    "train": {"data", "host", "infer", "artifacts", "report"},
    "serve": {"infer", "artifacts"},
    "inspect": {"data", "host", "infer", "artifacts", "report", "train"},
    "cli": {"data", "host", "infer", "artifacts", "report", "train", "serve", "inspect"},
    "api": {"data", "host", "infer", "artifacts", "report", "train", "cli"},  # clf.run(progress=True)
    "plugins": set(),  # the public clf API only (tests/test_layout.py checks the names)
}
# inspect reuses training's pieces through these modules, nothing else of train/ (or artifacts/).
NAMED = {("inspect", "train"): {"clf.train", "clf.train.features", "clf.train.model", "clf.train.extraction",
                                "clf.train.linear_head", "clf.train.fit", "clf.train.class_weights",
                                "clf.train.distribute", "clf.train.oof", "clf.train.unknown"},
         # a run's labels.json through the one reader that validates it
         ("inspect", "artifacts"): {"clf.artifacts.labels"},
         # int8's resolved-head variant solves the head as training does, with training's solver
         ("artifacts", "train"): {"clf.train.linear_head", "clf.train.unknown"}}


def stage(module: str) -> str | None:
    """The stage of a dotted clf module name (None for anything outside clf)."""
    parts = module.split(".")
    if parts[0] != "clf":
        return None
    if len(parts) == 1:
        return "base"
    if parts[1] == "plugins":
        return "plugins"
    if parts[1] == "api":
        return "api"
    return parts[1] if (ROOT / "core" / parts[1]).is_dir() else "base"


def source_stage(path: Path) -> str:
    rel = path.relative_to(ROOT)
    if rel.parts[0] == "plugins":
        return "plugins"
    if len(rel.parts) == 2:
        return "api" if rel.stem == "api" else "base"
    return rel.parts[1]


def imports(path: Path):
    """``(line, module, names)`` of every absolute import in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module, [a.name for a in node.names]


def violations(files):
    found = []
    for path in files:
        src = source_stage(path)
        for line, module, names in imports(path):
            dst = stage(module)
            if dst is None or dst == src:
                continue
            where = f"{path.relative_to(ROOT)}:{line} imports {module}"
            if src == "plugins" and module != "clf":
                found.append(f"{where}: plugins import only the public API (from clf import ...)")
            elif dst not in ALLOWED[src] | {"base"}:
                found.append(f"{where}: {src} may not import {dst}")
            elif (src, dst) in NAMED and module not in NAMED[src, dst]:
                found.append(f"{where}: {src} uses {dst} only through {sorted(NAMED[src, dst])}")
            elif dst != "base" and any(n.startswith("_") for n in names):
                found.append(f"{where}: a private name of another stage ({', '.join(names)})")
    return found


def all_files():
    return sorted((ROOT / "core").rglob("*.py")) + sorted((ROOT / "plugins").rglob("*.py"))


def test_every_import_follows_the_stage_graph():
    assert violations(all_files()) == []


def test_every_stage_is_in_the_table():
    stages = {p.name for p in (ROOT / "core").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert stages <= set(ALLOWED), f"add {sorted(stages - set(ALLOWED))} to ALLOWED"


def test_the_check_catches_an_upward_and_a_private_import():
    probe = ROOT / "core" / "infer" / "_stage_graph_probe.py"
    probe.write_text("def f():\n    from clf.train.fit import fit_head\n    from clf.data.images import _box\n",
                     encoding="utf-8")
    try:
        found = violations([probe])
    finally:
        probe.unlink()
    assert len(found) == 2, found
    assert "infer may not import train" in found[0] and "a private name of another stage (_box)" in found[1]
