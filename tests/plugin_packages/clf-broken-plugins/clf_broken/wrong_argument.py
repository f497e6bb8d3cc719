"""Names the hook's argument wrongly ('registrar' instead of 'register')."""

from clf import hookimpl


@hookimpl
def register_backbones(registrar):
    registrar("never_here", lambda shape, weights: None, preprocess="none")
