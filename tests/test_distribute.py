"""Strategies and precision: choice and validation in-process; multi-replica training in
subprocesses (logical CPU devices and TF_CONFIG must be set before TensorFlow starts)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import clf
from clf import ConfigError, DataError
from clf.train.distribute import (Distribution, distribution, is_chief, make_strategy, resolve_precision,
                                  resolve_strategy_name)
from conftest import SMALL_BACKBONE, SMALL_SIZE, SMALL_WEIGHTS, make_folder, make_image, require_shared

RUNNER = Path(__file__).with_name("distributed_run.py")
TIMEOUT = 300  # seconds per subprocess; a tiny run takes well under a minute on an idle machine


def test_config_rejects_unknown_strategy_and_precision(small_config):
    with pytest.raises(ConfigError, match=r"Invalid strategy 'horovod': expected one of auto, default, mirrored, multiworker, tpu"):
        small_config(strategy="horovod")
    with pytest.raises(ConfigError, match=r"Invalid precision 'float8'.*mixed_float16"):
        small_config(precision="float8")
    assert small_config(strategy=" Mirrored ", precision="MIXED_BFLOAT16").strategy == "mirrored"


def test_auto_on_a_cpu_machine_is_default_strategy_and_float32():
    assert resolve_strategy_name("auto") == "default"
    assert resolve_precision("auto") == "float32"
    assert resolve_precision("auto", "tpu") == "mixed_bfloat16"
    assert resolve_precision("mixed_float16") == "mixed_float16"


def test_multiworker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="needs the TF_CONFIG environment variable"):
        make_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid"):
        make_strategy("multiworker")


@pytest.mark.parametrize("cluster, task, chief", [
    ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 0}, True),
    ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 1}, False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "worker", "index": 0}, False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "chief", "index": 0}, True),
])
def test_chief_is_the_chief_task_or_worker_zero(monkeypatch, cluster, task, chief):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert is_chief() is chief
    monkeypatch.delenv("TF_CONFIG")
    assert is_chief() is True


def _two_replicas(batch: int) -> Distribution:
    return Distribution(None, "mirrored", 2, ("/cpu:0", "/cpu:1"), True, "float32", batch)


def test_small_split_is_batched_so_the_first_batch_splits_evenly():
    import tensorflow as tf

    sizes = lambda ds: [int(b.shape[0]) for b in ds]  # noqa: E731
    dist = _two_replicas(4)
    assert sizes(dist.batch(tf.data.Dataset.range(3), 3)) == [2, 1]
    assert sizes(dist.batch(tf.data.Dataset.range(6), 6)) == [4, 2]
    with pytest.raises(DataError, match="validation split has 1 image.*fewer than the 2 replicas"):
        dist.batch(tf.data.Dataset.range(1), 1, "validation")


def test_evaluation_on_one_replica_traces_the_model_once_whatever_the_batch_sizes():
    """Keras' predict_on_batch traced the model again for the last, shorter batch, and a
    process's fifth run printed TensorFlow's retracing warning (seen in benchmarks/portable.py)."""
    import keras
    import tensorflow as tf

    from clf.report.evaluation import evaluate_dataset
    from clf.infer.forward import batch_fn, forward_fn

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    x = np.random.default_rng(0).normal(size=(11, 4)).astype(np.float32)
    y = np.arange(11) % 3
    dist = distribution("default", "float32", 4)
    assert dist.replicas == 1
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)  # 4, 4 and 3 images
    report = evaluate_dataset(batch_fn(model), batches, ["a", "b", "c"])
    assert forward_fn(model).experimental_get_tracing_count() == 1
    expected = np.mean(np.argmax(model(x), axis=1) == y)
    assert report["accuracy"] == pytest.approx(expected)


def test_epoch_order_depends_on_seed_and_epoch_not_on_iterators_opened():
    import tensorflow as tf

    from clf.train import checkpoint

    # One mechanism for resume and for strategies: checkpoint.epoch_batches batched by the
    # Distribution (as the engine does it).
    dist = Distribution(tf.distribute.get_strategy(), "default", 1, (), True, "float32", 4)
    ds = checkpoint.epoch_batches(tf.data.Dataset.range(10), seed=7, buffer=10,
                                  first_epoch=0, epochs=3, batch=lambda d: dist.batch(d, 10))
    steps = dist.steps(10)
    assert steps == 3
    assert _two_replicas(4).steps(3) == 2 and _two_replicas(4).steps(6) == 2
    first = [b.numpy().tolist() for b in ds]
    assert [b.numpy().tolist() for b in ds] == first  # a second iterator: the same batches
    epochs = [sum(first[i * 3:(i + 1) * 3], []) for i in range(3)]
    assert all(sorted(e) == list(range(10)) for e in epochs) and epochs[0] != epochs[1]


@pytest.mark.parametrize("precision, compute", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")])
def test_mixed_precision_keeps_the_output_float32_and_reloads(small_config, precision, compute):
    import keras

    result = clf.run(small_config(precision=precision, epochs=1, verify=True))
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run
    assert result.distribution["precision"] == precision
    conv = next(layer for layer in result.classifier.backbone.layers if "conv" in layer.name.lower())
    assert conv.compute_dtype == compute and conv.variable_dtype == "float32"
    assert result.classifier.head.get_layer("predictions").compute_dtype == "float32"
    assert result.model.output.dtype == "float32"
    if precision == "mixed_float16":
        # Whichever model the engine compiled (the head on cached features, or the whole model).
        optimizer = getattr(result.classifier.head, "optimizer", None) or result.model.optimizer
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    labels = json.loads((result.run_dir / "labels.json").read_text())
    assert labels["precision"] == precision
    x = np.random.default_rng(0).uniform(0, 255, (2, SMALL_SIZE, SMALL_SIZE, 3)).astype(np.float32)
    predictor = clf.load_predictor(result.run_dir)
    probs = predictor.predict_batch(x)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs, result.outputs(x), atol=1e-3)
    np.testing.assert_allclose(probs[:, :3].sum(axis=1), 1.0, atol=1e-3)  # then the known score


def _run_script(args, env=None):
    full_env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    full_env.update({"TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})
    return subprocess.Popen([sys.executable, str(RUNNER), *map(str, args)], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(procs, timeout=TIMEOUT, check=True):
    """Wait for every process within ``timeout``; kill them all on timeout or failure.
    ``check``: every process must succeed."""
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0 or not check, out[-4000:]
    return outputs


def _run_config(data, output, **changes):
    # No dropout: its masks come from each replica's own random stream, so strategies could
    # not be compared step for step. Keras fit (not the solved head): its steps are what the
    # strategies must agree on.
    base = dict(backbone=SMALL_BACKBONE, data=str(data), weights="none", epochs=2, batch_size=4,
                image_size=SMALL_SIZE, output=str(output), augment=False, seed=3, dropout=0.0, solver="keras")
    base.update(changes)
    return base


def _cached_features(cache_dir: Path) -> dict[str, np.ndarray]:
    """Content hash -> feature row, for every clean entry a run stored under ``cache_dir``."""
    table = {}
    for shard in sorted(cache_dir.rglob("clean-*.npz")):
        with np.load(shard) as data:
            table.update(zip(data["hashes"].tolist(), data["features"]))
    return table


@pytest.fixture(scope="module")
def mirrored_runs(tmp_path_factory):
    """Both comparisons below, default then mirrored over two logical CPUs, run in one
    subprocess (one TensorFlow start for the four runs); ``{test: (default, mirrored, root)}``."""
    root = tmp_path_factory.mktemp("mirrored")
    # 12 training images, batch 4: every batch splits evenly over the two replicas.
    data = make_folder(root / "data", per_class=4, split_dirs=True)
    # Phase 2 trains the whole model on live images under the strategy.
    plans = {"fine_tune": dict(epochs=1, fine_tune_layers=2, fine_tune_epochs=2, lr=0.01)}
    if SMALL_WEIGHTS.exists():  # else the head test skips (require_shared)
        # Real ImageNet weights give informative features, so training moves the head well
        # beyond float noise and a wrong split of batches or gradients would show.
        plans["head"] = dict(weights=str(SMALL_WEIGHTS), lr=0.01, epochs=3)
    # Only the mirrored runs verify their export (the default runs are the reference).
    configs = [_run_config(data, root / test / name, strategy=name, verify=name == "mirrored",
                           cache_dir=str(root / test / f"cache-{name}"), **changes)
               for test, changes in plans.items() for name in ("default", "mirrored")]
    (root / "configs.json").write_text(json.dumps(configs))
    _finish([_run_script([root / "configs.json", root / "out.json", "--cpus", "2"])], timeout=len(plans) * TIMEOUT)
    results = json.loads((root / "out.json").read_text())
    return {test: (results[2 * i], results[2 * i + 1], root / test) for i, test in enumerate(plans)}


@pytest.mark.slow  # training in subprocesses
def test_mirrored_over_two_cpus_trains_the_same_model_as_default(mirrored_runs):
    require_shared(SMALL_WEIGHTS)
    default, mirrored, root = mirrored_runs["head"]

    assert default["distribution"]["replicas"] == 1
    assert mirrored["distribution"]["strategy"] == "mirrored"
    assert mirrored["distribution"]["replicas"] == 2 and len(mirrored["distribution"]["devices"]) == 2
    assert mirrored["distribution"]["per_replica_batch_size"] == 2
    assert default["history"]["loss"][-1] < default["history"]["loss"][0] - 0.1  # it learned
    np.testing.assert_allclose(mirrored["history"]["loss"], default["history"]["loss"], rtol=1e-4)
    for a, b in zip(default["head_weights"], mirrored["head_weights"]):
        np.testing.assert_allclose(np.array(b), np.array(a), atol=1e-4)
    for key in ("validation_loss", "validation_accuracy"):  # evaluation: one row per image
        np.testing.assert_allclose(mirrored["metrics"][key], default["metrics"][key], atol=1e-4)
    assert {"labels.json", "model.h5", "model.weights.h5"} <= {p.name for p in (root / "mirrored").iterdir()}
    # Extraction: each batch of 4 split 2 + 2 over the replicas (the last validation batch
    # of 2: 1 + 1), in file order, with the features one device computes.
    assert default["extraction"]["train"] == {"extracted": 12, "cached": 0}
    assert mirrored["extraction"]["train"] == {"extracted": 12, "cached": 0, "by_replica": [6, 6]}
    assert mirrored["extraction"]["validation"]["by_replica"] == [3, 3]
    one, two = _cached_features(root / "cache-default"), _cached_features(root / "cache-mirrored")
    assert len(one) == 18 and one.keys() == two.keys()
    for key, row in one.items():
        np.testing.assert_allclose(two[key], row, atol=1e-5)


@pytest.mark.slow  # training in subprocesses
def test_fine_tuning_under_mirrored_matches_default(mirrored_runs):
    # Phase 2 trains the whole model on live images under the strategy: the same
    # (seed, epoch)-keyed batches, so the same losses as on one device.
    default, mirrored, _ = mirrored_runs["fine_tune"]

    assert mirrored["distribution"]["replicas"] == 2
    assert len(mirrored["history"]["fine_tune_loss"]) == 2
    np.testing.assert_allclose(mirrored["history"]["fine_tune_loss"], default["history"]["fine_tune_loss"],
                               rtol=1e-3)
    for key in ("validation_loss", "validation_accuracy"):  # evaluated on live images after phase 2
        np.testing.assert_allclose(mirrored["metrics"][key], default["metrics"][key], atol=1e-3)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_extraction_shares_depend_on_contents_not_order_and_differ_by_one_at_most():
    from clf.train.sharding import assign, replica_sizes

    hashes = [f"{i * 7919 % 1000:04x}" for i in range(11)]
    shares = assign(hashes, range(11), 3)
    assert sorted(i for s in shares for i in s) == list(range(11))
    assert [len(s) for s in shares] == [4, 4, 3] and all(s == sorted(s) for s in shares)
    # The same files listed in another order: each file goes to the same worker.
    order = [5, 2, 9, 0, 10, 1, 3, 8, 4, 7, 6]
    moved = assign([hashes[i] for i in order], range(11), 3)
    assert [sorted(order[j] for j in s) for s in moved] == shares
    assert assign(hashes, [3, 1], 3)[2] == [] and replica_sizes(7, 2) == [4, 3]


def _loopback_workers(tmp_path, configs):
    """One process per config (a config or a list), as the workers of one loopback cluster;
    worker i writes out{i}.json."""
    workers = [f"127.0.0.1:{p}" for p in _free_ports(len(configs))]
    procs = []
    for index, config in enumerate(configs):
        (tmp_path / f"config{index}.json").write_text(json.dumps(config))
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(_run_script([tmp_path / f"config{index}.json", tmp_path / f"out{index}.json"],
                                 env={"TF_CONFIG": json.dumps(tf_config)}))
    return procs


@pytest.mark.slow  # training in subprocesses
def test_multiworker_on_two_local_processes_and_only_the_chief_writes(tmp_path, feature_cache_dir):
    data = make_folder(tmp_path / "data", per_class=4, split_dirs=True)
    # The chief's cache already holds half the training images and the validation split
    # (from a one-process run on those); the workers split the other half and the augmented
    # copy of every training image.
    warm = tmp_path / "warm"
    shutil.copytree(data, warm, ignore=lambda folder, names: [n for n in names if n.endswith(("_2.jpg", "_3.jpg"))
                                                             and Path(folder).parent.name == "train"])
    clf.run(clf.RunConfig(**_run_config(warm, tmp_path / "warm-run", strategy="default", epochs=1, verify=False)))
    output = tmp_path / "run"  # the same --output on both, as on a shared file system
    config = _run_config(data, output, strategy="multiworker", augment=True, augment_copies=1)
    outputs = _finish(_loopback_workers(tmp_path, [config, config]))
    chief, other = (json.loads((tmp_path / f"out{i}.json").read_text()) for i in range(2))
    # TensorFlow's notes about tracing by design stay out of a worker's output.
    assert not any("retracing" in out for out in outputs), [l for o in outputs for l in o.splitlines() if "retrac" in l]

    # Each worker extracted half of what the cache lacked; every worker holds the same record.
    assert chief["extraction"] == other["extraction"] == {
        "train": {"extracted": 18, "cached": 6, "by_worker": [9, 9]},
        "validation": {"extracted": 0, "cached": 6, "by_worker": [0, 0]}}
    assert json.loads((output / "manifest.json").read_text())["extraction"] == chief["extraction"]
    # The chief stored every worker's features: 18 clean entries, 12 augmented.
    assert len(_cached_features(feature_cache_dir)) == 18
    assert sum(np.load(p)["hashes"].size for p in feature_cache_dir.rglob("aug-*.npz")) == 12
    # The other worker evaluated on the features the chief served from its cache.
    assert chief["metrics"] == other["metrics"]

    for r in (chief, other):
        assert r["distribution"]["strategy"] == "multiworker" and r["distribution"]["replicas"] == 2
        assert len(r["history"]["loss"]) == 2
    assert chief["distribution"]["chief"] and not other["distribution"]["chief"]
    assert chief["run_dir"] == str(output) and chief["artifacts"]["h5"]
    assert other["artifacts"] == {} and other["run_dir"] != str(output) and not other["run_dir_exists"]
    written = {p.name for p in output.iterdir()}
    assert {"labels.json", "model.h5", "model.weights.h5", "manifest.json"} <= written
    # Nothing from the other worker: its run record went to a temp folder, now removed.
    assert not any(p.name.startswith("clf-worker-") for p in output.parent.iterdir())
    # Synchronous training: both workers end with the same weights.
    for a, b in zip(chief["head_weights"], other["head_weights"]):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-6)
    predictor = clf.load_predictor(output)
    assert predictor.class_names == ["ant", "bee", "cat"]


def test_cli_rejects_an_unknown_strategy_with_usage_exit_code(image_folder, tmp_path):
    from typer.testing import CliRunner

    from clf.cli import app

    result = CliRunner().invoke(app, ["run", "--data", str(image_folder), "--strategy", "spark",
                                      "--output", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "Invalid strategy 'spark'" in result.output and not (tmp_path / "r").exists()


@pytest.mark.slow  # training in subprocesses
def test_multiworker_workers_that_see_different_files_stop_with_a_clear_error(tmp_path):
    data = make_folder(tmp_path / "data", per_class=2, split_dirs=True, val_per_class=1)
    other = tmp_path / "other"
    shutil.copytree(data, other)
    make_image(other / "train" / "ant" / "extra.jpg", 0, np.random.default_rng(5))
    procs = _loopback_workers(tmp_path, [_run_config(f, tmp_path / "run", strategy="multiworker")
                                         for f in (data, other)])
    outputs = _finish(procs, check=False)
    for p, out in zip(procs, outputs):
        assert p.returncode != 0 and "The workers see different files in the train split" in out, out[-3000:]
    assert not (tmp_path / "run" / "model.h5").exists()
