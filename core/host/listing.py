"""What ``clf plugins`` shows: loaded plugins (built-ins marked) and skipped ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clf.host.manager import PluginHost

# component names per kind in the table; --json shows all
SHOWN = 6


def plugin_rows(host: PluginHost) -> list[dict[str, Any]]:
    """One record per plugin, loaded or skipped, for ``clf plugins --json``."""
    rows = [{"name": i.name, "status": "loaded", "origin": i.origin, "builtin": i.builtin,
             "distribution": i.distribution, "version": i.version, "module": i.module or
             (i.name if i.origin in ("builtin", "module") else None),
             "hooks": list(i.hooks), "components": {k: list(v) for k, v in i.components.items()},
             "error": None} for i in host.infos.values()]
    rows += [{"name": s.name, "status": "skipped", "origin": "entrypoint", "builtin": False,
              "distribution": s.distribution, "version": s.version, "module": s.module,
              "hooks": [], "components": {}, "error": s.error} for s in host.skipped]
    return rows


TABLE_COLUMNS = ["plugin", "distribution", "hooks", "registered"]
_ORIGIN = {"builtin": "built-in", "entrypoint": "installed", "module": "--plugin module",
           "file": "--plugin file", "object": "registered in code"}


def plugin_table_rows(host: PluginHost) -> list[list[str]]:
    """Rows for TABLE_COLUMNS: the plugin cell says where it came from on a second line."""
    rows = []
    for r in plugin_rows(host):
        name = r["name"].removeprefix("clf.plugins.") if r["builtin"] else r["name"]
        if r["origin"] == "file":
            name = Path(name).name  # --json has the whole path
        name += f"\n({_ORIGIN.get(r['origin'], r['origin'])})"
        dist = f"{r['distribution'] or '-'} {r['version'] or ''}".strip()
        if r["status"] == "skipped":
            # the full error is printed above the table
            rows.append([name, dist, "-", f"SKIPPED: {r['error'].split(';')[0]}"])
            continue
        registered = "; ".join(f"{kind}: {_names(names)}" for kind, names in r["components"].items())
        rows.append([name, dist, "\n".join(r["hooks"]), registered or "-"])
    return rows


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > SHOWN else shown
