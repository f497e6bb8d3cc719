"""core/ and plugins/ type-check as the package ``clf``: mypy, as configured in pyproject.toml
([tool.mypy]), finds no error. ``python tests/typecheck.py`` shows the same report (it links
core/ as ``clf`` and plugins/ as ``clf.plugins``, so imports across modules are checked)."""

import pytest

import typecheck


def test_mypy_finds_no_error():
    pytest.importorskip("mypy.api", reason="mypy is in the test extra: pip install -e '.[test]'")
    report, status = typecheck.run()
    assert status == 0, f"mypy found errors (exit {status}):\n{report}"


def test_report_paths_are_the_repository_paths(tmp_path):
    package = typecheck.link_package(tmp_path)
    assert (package / "plugins" / "heads.py").resolve() == typecheck.REPO / "plugins" / "heads.py"
    assert (package / "train" / "fit.py").resolve() == typecheck.REPO / "core" / "train" / "fit.py"
    report = f"{package}/plugins/heads.py:1: error\n{package}/train/fit.py:2: error\n"
    assert typecheck.to_repo_paths(report, package) == "plugins/heads.py:1: error\ncore/train/fit.py:2: error\n"
