"""RunConfig <-> TOML: ``clf run --config run.toml`` and the run folder's ``config.toml``.

The file is flat: one key per ``RunConfig`` field, named as in Python (``batch_size``),
the same names as the CLI flags with ``_`` for ``-``. Read with the stdlib ``tomllib``,
written with ``tomli-w``.
"""

from __future__ import annotations

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
    """The file's values, then ``overrides`` on top (the CLI flags given explicitly)."""
    values = read_config_file(path)
    _check_types(values, path)
    values.update(overrides or {})
    return RunConfig.from_mapping(values)


def _check_types(values: Mapping[str, Any], path: str | Path) -> None:
    """Type errors TOML can express (``epochs = "10"``) name the key before validation runs."""
    from dataclasses import fields

    expected = {f.name: str(f.type) for f in fields(RunConfig)}
    for key, value in values.items():
        kind = expected.get(key)
        if kind is None:
            continue  # unknown keys: RunConfig.from_mapping names them with the full list
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
    """The effective configuration as TOML that ``clf run --config`` reads back unchanged."""
    import tomli_w

    return "# clf run configuration (clf run --config THIS_FILE)\n" + tomli_w.dumps(config.to_dict())
