"""Broken clf plugins, one failure per module (test fixture)."""
