"""``clf run --dry-run``: the setup and data phases of a real run, then stop.

It calls the same ``resolve`` and ``load_data`` as ``clf.run``, so its report cannot
drift from what a run would see, and it fails with the same error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clf.config import RunConfig, config_to_toml
from clf.data.loading import load_data
from clf.events import Observer
from clf.train.setup import resolve
from clf.host.manager import get_host

if TYPE_CHECKING:
    from clf.host.manager import PluginHost


def plan(config: RunConfig, host: PluginHost | None = None, observer: Observer | None = None) -> dict[str, Any]:
    """The effective TOML and a dataset summary, or the error the real run would raise first."""
    setup = resolve(config, host or get_host(config.plugins))
    data = load_data(config, setup.loader, setup.image_size, observer or Observer())
    return {
        "toml": config_to_toml(config),
        "backbone": setup.backbone.name, "head": setup.head.name, "loader": setup.loader.name,
        "exporters": [e.name for e in setup.exporters],
        "image_size": list(setup.image_size),
        "class_names": data.bundle.class_names,
        "counts": data.counts,
    }
