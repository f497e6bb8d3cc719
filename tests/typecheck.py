"""Type-check the package as it is imported: ``python tests/typecheck.py`` from anywhere.

mypy names a module by its folder, and the source folders are not the import names (core/ is
installed as ``clf``, plugins/ as ``clf.plugins``: pyproject.toml's package-dir). Run on
core/ directly, mypy would call the modules ``core.*`` and every ``from clf.config import
RunConfig`` would be an unresolved import (Any), so no type would be checked across modules.
Instead this builds a folder holding ``clf/`` (under .mypy_cache), whose entries are links to
everything in core/ plus ``clf/plugins`` -> plugins/, and runs mypy on the package ``clf`` from there (``-p clf``, the
folder on ``MYPYPATH``), with pyproject.toml's [tool.mypy] settings. Paths in the report are
mapped back to core/... and plugins/...

Extra arguments go to mypy (``python tests/typecheck.py --no-incremental``). Exit status is
mypy's: 0 when it finds no error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def link_package(root: Path) -> Path:
    """``root/clf``, made anew: links to each entry of core/ and ``plugins`` -> plugins/."""
    package = root / "clf"
    if package.is_dir():
        for entry in package.iterdir():
            entry.unlink()  # the links only, never what they point to
        package.rmdir()
    package.mkdir(parents=True)
    for entry in sorted((REPO / "core").iterdir()):
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "plugins").symlink_to(REPO / "plugins")
    return package


def to_repo_paths(text: str, package: Path) -> str:
    """The report with ``<tmp>/clf/plugins/`` read as plugins/ and ``<tmp>/clf/`` as core/."""
    for prefix in (str(package) + os.sep, os.path.relpath(package) + os.sep):
        text = text.replace(prefix + "plugins" + os.sep, "plugins" + os.sep)
        text = text.replace(prefix, "core" + os.sep)
    return text


def run(args: list[str] | None = None) -> tuple[str, int]:
    """mypy's report (paths under core/ and plugins/) and its exit status."""
    from mypy import api

    cache = REPO / ".mypy_cache"  # mypy keeps it out of git
    root = cache / "links"  # the same folder every run, so mypy's incremental cache holds
    package = link_package(root)
    previous = os.environ.get("MYPYPATH")
    os.environ["MYPYPATH"] = str(root)
    try:
        report, errors, status = api.run([
            "--config-file", str(REPO / "pyproject.toml"), "--cache-dir", str(cache),
            *(args or []), "-p", "clf",
        ])
    finally:
        if previous is None:
            os.environ.pop("MYPYPATH", None)
        else:
            os.environ["MYPYPATH"] = previous
    return to_repo_paths(report + errors, package), status


def main() -> int:
    report, status = run(sys.argv[1:])
    sys.stdout.write(report)
    return status


if __name__ == "__main__":
    sys.exit(main())
