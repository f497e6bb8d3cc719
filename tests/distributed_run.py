"""Runs one ``clf.run`` in a fresh process, for the distributed tests (not a test module).

Logical CPU devices and TF_CONFIG must be set before TensorFlow starts its runtime, which
cannot be undone inside the pytest process; so the tests launch this script instead.

    python distributed_run.py CONFIG_JSON RESULT_JSON [--cpus N]

CONFIG_JSON holds RunConfig fields, or a list of them to run one after the other in this
process (saves a TensorFlow start); RESULT_JSON receives, for each run, its distribution
info, metrics, extraction counts, artifacts and the trained head's weights (as lists).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("result")
    parser.add_argument("--cpus", type=int, default=1)
    args = parser.parse_args()

    import tensorflow as tf

    if args.cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpus)

    import clf

    with open(args.config) as f:
        configs = json.load(f)
    results = [summary(clf.run(clf.RunConfig.from_mapping(c)))
               for c in (configs if isinstance(configs, list) else [configs])]
    with open(args.result, "w") as f:
        json.dump(results if isinstance(configs, list) else results[0], f)
    return 0


def summary(result) -> dict:
    return {
        "distribution": result.distribution,
        "metrics": result.metrics,
        "history": result.history,
        "extraction": result.extraction,
        "run_dir": str(result.run_dir),
        "run_dir_exists": result.run_dir.exists(),
        "artifacts": {k: [str(p) for p in v] for k, v in result.artifacts.items()},
        "head_weights": [w.tolist() for w in result.classifier.head.get_weights()],
        "output_dtype": str(result.model.output.dtype),
    }


if __name__ == "__main__":
    sys.exit(main())
