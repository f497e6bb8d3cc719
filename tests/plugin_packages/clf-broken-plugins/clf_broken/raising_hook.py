"""Imports fine, registers a head, then raises inside its hook."""

from clf import hookimpl


@hookimpl
def register_heads(register):
    register("half_registered", lambda features, num_classes, **_: None)
    raise RuntimeError("kaput in register_heads")
