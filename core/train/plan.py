"""``clf run --dry-run``: resolve every component and read the dataset, train nothing."""

from __future__ import annotations

from typing import Any

from clf.config import RunConfig
from clf.configfile import config_to_toml
from clf.train.engine import image_size_for, resolve_components
from clf.errors import DataError


def plan(config: RunConfig, host=None) -> dict[str, Any]:
    """The effective TOML and a dataset summary, or the error the real run would raise first."""
    from clf.host.manager import get_host

    host = host or get_host(config.plugins)
    backbone, head, loader, exporters = resolve_components(config, host)
    image_size = image_size_for(config, backbone)
    bundle = loader.load(config.data, image_size=image_size, seed=config.seed,
                         validation_split=config.validation_split)
    if config.classes is not None and config.classes != bundle.num_classes:
        raise DataError(
            f"--classes {config.classes} but {config.data} has {bundle.num_classes} class "
            f"folders ({', '.join(bundle.class_names)}). Pass --classes {bundle.num_classes} "
            f"or omit --classes to infer it."
        )
    return {
        "toml": config_to_toml(config),
        "backbone": backbone.name, "head": head.name, "loader": loader.name,
        "exporters": [e.name for e in exporters],
        "image_size": list(image_size),
        "class_names": bundle.class_names,
        "counts": {name: bundle.counts(name) for name in bundle.splits},
    }
