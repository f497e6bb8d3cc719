"""Reports: metrics, evaluation over labelled images, training history, plots and the
run record (config.toml, manifest.json, metrics.json)."""
