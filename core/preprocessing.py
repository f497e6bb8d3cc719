"""Kept so ``from clf.preprocessing import register_preprocess`` (documented before the
stage packages) still works; the code lives in ``clf.data.preprocessing`` and the name is
exported from ``clf`` itself."""

from clf.data.preprocessing import get_preprocess, preprocess_modes, register_preprocess  # noqa: F401
