"""RunConfig <-> TOML (``clf run --config run.toml``, a run's ``config.toml``).
Flat: one key per ``RunConfig`` field (``batch_size``)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Mapping

from clf.config import RunConfig
from clf.errors import ConfigError


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The flat mapping in a TOML file; a clear ConfigError when it is missing or malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Config file {str(path)!r} does not exist; expected a TOML file. Check --config.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {str(path)!r}: {exc.strerror}. Check --config.") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {str(path)!r} is not valid TOML: {exc}. Fix the line it names.") from None
    tables = sorted(k for k, v in values.items() if isinstance(v, dict))
    if tables:
        raise ConfigError(
            f"Config file {str(path)!r} has table(s) {', '.join(f'[{t}]' for t in tables)}; expected "
            f"flat 'key = value' lines (e.g. epochs = 10). Move those keys to the top level."
        )
    return values


def config_from_file(path: str | Path, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The file's values with ``overrides`` (explicit CLI flags) on top.

    ``force = true`` (deletes a folder) and ``plugins`` (runs code) must come from the command
    line too, since files are shared and replayed; otherwise ConfigError."""
    values = read_config_file(path)
    _check_types(values, path)
    overrides = dict(overrides or {})
    if values.get("force") is True and "force" not in overrides:
        raise ConfigError(
            f"Config file {str(path)!r} says force = true; a config file never replaces a run folder "
            f"(it may be a copy of an earlier run's config.toml, whose folder --force would delete). "
            f"Remove that line, and pass --force on the command line if you mean to replace --output."
        )
    values.pop("force", None)  # older config.toml files carry force = false
    plugins = values.get("plugins") or []
    plugins = [plugins] if isinstance(plugins, str) else list(plugins)
    if plugins and "plugins" not in overrides:
        raise ConfigError(
            f"Config file {str(path)!r} names plugins = {plugins}; clf loads plugin code only when "
            f"the command line names it (a config file is data, and a plugin runs with your "
            f"permissions, even in a --dry-run). Pass {' '.join(f'--plugin {p}' for p in plugins)} "
            f"if you trust {'it' if len(plugins) == 1 else 'them'}, or remove 'plugins' from the file."
        )
    values.update(overrides)
    return RunConfig.from_mapping(values)


def _check_types(values: Mapping[str, Any], path: str | Path) -> None:
    """Type errors TOML can express (``epochs = "10"``) name the key before validation runs."""
    from dataclasses import fields

    expected = {f.name: str(f.type) for f in fields(RunConfig)}
    for key, value in values.items():
        kind = expected.get(key)
        if kind is None:
            continue  # RunConfig.from_mapping reports unknown keys
        ok = True
        if kind.startswith("int"):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind.startswith("float"):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif kind.startswith("bool"):
            ok = isinstance(value, bool)
        elif kind.startswith("tuple"):
            ok = isinstance(value, (list, str)) and all(isinstance(v, str) for v in value)
        elif kind.startswith("str"):
            ok = isinstance(value, str)
        if not ok:
            raise ConfigError(
                f"Invalid {key} {value!r} in {str(path)!r}: expected {kind.replace(' | None', '')} "
                f"(TOML {type(value).__name__} given). Fix '{key}' in the config file."
            )


def config_to_toml(config: RunConfig) -> str:
    """The config as TOML for ``clf run --config``: without ``force``, with paths made absolute
    so the file repeats the run from any folder."""
    import tomli_w

    values = {k: v for k, v in config.to_dict().items() if k != "force"}
    if Path(values["data"]).expanduser().exists():  # a loader may take something other than a path
        values["data"] = _absolute(values["data"])
    if values["weights"] not in ("imagenet", "none"):
        values["weights"] = _absolute(values["weights"])
    if "cache_dir" in values:
        values["cache_dir"] = _absolute(values["cache_dir"])
    values["plugins"] = [_absolute(p) if p.endswith(".py") or Path(p).is_file() else p for p in values["plugins"]]
    return "# clf run configuration (clf run --config THIS_FILE)\n" + tomli_w.dumps(values)


def _absolute(path: str) -> str:
    """``path`` from the current folder, as an absolute path (links kept, as typed)."""
    return os.path.abspath(os.path.expanduser(path))
