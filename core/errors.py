"""Every error the engine raises; only the CLI turns them into text and exit codes.
Messages say what happened, what was expected and how to fix it."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Iterable


class ClfError(Exception):
    """Base of every clf error; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(ClfError):
    """The user asked for something invalid (bad option value, unknown name)."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration value or key is invalid."""


# An unknown name lists the known ones up to this many; past it the listing command says.
SHOWN_NAMES = 12


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """" Did you mean 'x'?" for the known names closest to a typo (stdlib difflib), or ""."""
    known = list(dict.fromkeys(known))
    key = str(name).strip().lower().replace("-", "_")
    close = _closest(key, {k: k for k in known}, cutoff=0.6)
    if not close:  # a name typed without its separators: mobilenetv2035 for mobilenet_v2_035
        close = _closest(key.replace("_", ""), {k.replace("_", ""): k for k in known}, cutoff=0.8)
    return f" Did you mean {' or '.join(map(repr, close))}?" if close else ""


def _closest(key: str, candidates: dict[str, str], cutoff: float) -> list[str]:
    """Up to three matches (form -> name), only those about as close as the best (vgg61: vgg16, vgg19)."""
    scored = [(difflib.SequenceMatcher(None, key, form).ratio(), candidates[form])
              for form in difflib.get_close_matches(key, list(candidates), n=3, cutoff=cutoff)]
    return [name for ratio, name in scored if ratio >= scored[0][0] - 0.03]


class UnknownComponentError(UsageError):
    """A backbone, head, loader or exporter name that no plugin registered."""

    def __init__(self, kind: str, name: str, available: list[str], list_command: str,
                 aliases: Iterable[str] = ()) -> None:
        self.kind, self.name, self.available = kind, name, available
        hint = did_you_mean(name, [*available, *aliases])
        if not available:
            shown = " None is registered."
        elif len(available) <= SHOWN_NAMES:
            shown = f" Available: {', '.join(available)}."
        else:
            shown = f" {len(available)} are available."
        super().__init__(
            f"Unknown {kind} {name!r}.{hint}{shown} Run 'clf {list_command}' to list them."
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

    def __init__(self, run_dir: str | Path, epoch: int, epochs: int) -> None:
        self.run_dir, self.epoch, self.epochs = run_dir, epoch, epochs
        super().__init__(
            f"Interrupted: training stopped during epoch {epoch + 1} of {epochs}; epoch "
            f"{epoch} is saved in {str(run_dir)!r}. Continue with: clf run --resume {run_dir}"
            if epoch else
            f"Interrupted during the first epoch; no epoch was completed, nothing to resume "
            f"in {str(run_dir)!r}. Start the run again."
        )


class NotFoundError(UsageError):
    """A file, folder or plugin module named in the command does not exist (exit code 2)."""


# Each also subclasses its kind's error, so ``except DataError`` catches a missing --data folder.
class DataNotFoundError(NotFoundError, DataError):
    """--data (or another image path) does not exist."""


class ModelNotFoundError(NotFoundError, ModelError):
    """A model or run folder that does not exist."""


class PluginNotFoundError(NotFoundError, PluginError):
    """A --plugin file or module that does not exist."""


class WeightsNotFoundError(NotFoundError, WeightsError):
    """A --weights file that does not exist."""


class VerificationError(ExportError):
    """An exported artifact does not reproduce the model it came from."""
