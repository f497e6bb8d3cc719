"""Compatibility alias: the code lives in ``clf.data.preprocessing``."""

from clf.data.preprocessing import get_preprocess, preprocess_modes, register_preprocess  # noqa: F401
