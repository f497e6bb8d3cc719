"""Misspells the hook's name ('register_exporter', no final s)."""

from clf import hookimpl


@hookimpl
def register_exporter(register):
    register("never_here", lambda model, directory, metadata: [])
