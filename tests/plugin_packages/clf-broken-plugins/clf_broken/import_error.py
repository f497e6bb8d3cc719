"""Fails to import: it needs a package that is not installed."""

import clf_missing_dependency_xyz  # noqa: F401
