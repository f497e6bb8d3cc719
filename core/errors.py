"""Every error the engine raises. Only the CLI turns these into printed text and exit codes.

Messages say what happened, what was expected and how to fix it, with the offending value.
"""

from __future__ import annotations


class ClfError(Exception):
    """Base of every clf error. `exit_code` is what the CLI exits with."""

    exit_code = 1


class UsageError(ClfError):
    """The user asked for something invalid (bad option value, unknown name)."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration value or key is invalid."""


class UnknownComponentError(UsageError):
    """A backbone, head, loader or exporter name that no plugin registered."""

    def __init__(self, kind: str, name: str, available: list[str], list_command: str):
        self.kind, self.name, self.available = kind, name, available
        shown = ", ".join(available) if available else "(none registered)"
        super().__init__(
            f"Unknown {kind} {name!r}. Available: {shown}. Run 'clf {list_command}'."
        )


class PluginError(ClfError):
    """A plugin failed to load, is misspelled, or registered something invalid."""


class DataError(ClfError):
    """The dataset is missing, empty, or does not match what was asked."""


class WeightsError(ClfError):
    """Backbone weights could not be obtained or do not fit the backbone."""


class ModelError(ClfError):
    """A saved model or artifact cannot be read or is not a clf artifact."""


class ExportError(ClfError):
    """An exporter failed to write its artifact."""


class Interrupted(ClfError):
    """Training was stopped (Ctrl-C) after the last checkpoint was saved."""

    exit_code = 130

    def __init__(self, run_dir, epoch: int, epochs: int):
        self.run_dir, self.epoch, self.epochs = run_dir, epoch, epochs
        super().__init__(
            f"Interrupted: training stopped during epoch {epoch + 1} of {epochs}; epoch "
            f"{epoch} is saved in {str(run_dir)!r}. Continue with: clf run --resume {run_dir}"
            if epoch else
            f"Interrupted during the first epoch; no epoch was completed, nothing to resume "
            f"in {str(run_dir)!r}. Start the run again."
        )


class VerificationError(ExportError):
    """An exported artifact does not reproduce the model it came from."""
