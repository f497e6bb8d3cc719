"""core/ and plugins/ type-check: mypy, as configured in pyproject.toml ([tool.mypy]), finds
no error. Run ``mypy`` from the repository root to see the same report."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_mypy_finds_no_error(monkeypatch):
    api = pytest.importorskip("mypy.api", reason="mypy is in the test extra: pip install -e '.[test]'")
    monkeypatch.chdir(REPO)  # the configuration's files = core, plugins are relative to it
    report, errors, status = api.run(["--config-file", str(REPO / "pyproject.toml")])
    assert status == 0, f"mypy found errors (exit {status}):\n{report}{errors}"
