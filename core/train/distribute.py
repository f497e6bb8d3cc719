"""Scale out on TensorFlow's own engine: a ``tf.distribute`` strategy and a precision. Keras
splits each batch across the replicas; ``--batch-size`` is the **global** batch, so one command
means one training recipe on any hardware.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from clf.config import PRECISIONS, STRATEGIES, check_name
from clf.errors import ConfigError, DataError
from clf.host.keras_patches import replace_symbolic_build

# Strategies that configure the process (collective ops, TPU system) can be made once per process.
_CACHE: dict[str, Any] = {}


@dataclass(frozen=True)
class Distribution:
    """What the engine runs under, as the logs and RunResult report it."""

    strategy: Any  # tf.distribute.Strategy
    name: str  # the resolved name: default, mirrored, multiworker or tpu
    replicas: int
    devices: tuple[str, ...]
    chief: bool
    precision: str  # the resolved Keras dtype policy name
    global_batch_size: int

    @property
    def per_replica_batch_size(self) -> int:
        return max(1, self.global_batch_size // self.replicas)

    @property
    def static_batches(self) -> bool:
        """TPUs compile for fixed shapes: the last, partial batch must be dropped."""
        return self.name == "tpu"

    def as_info(self) -> dict[str, Any]:
        """Plain values for the observer, RunResult.distribution and logs."""
        return {"strategy": self.name, "replicas": self.replicas, "devices": list(self.devices),
                "chief": self.chief, "precision": self.precision,
                "global_batch_size": self.global_batch_size,
                "per_replica_batch_size": self.per_replica_batch_size}

    def batch_size_for(self, count: int | None, size: int | None = None, split: str = "train") -> int:
        """The batch size for a split of ``count`` elements (``size``: the global batch): Keras
        builds the model from the first batch, which must split evenly across replicas
        (``_maybe_symbolic_build``), so a smaller split gets the largest multiple that fits."""
        size = size or self.global_batch_size
        first = min(count, size) if count is not None and count >= 0 else size
        if self.replicas > 1 and first % self.replicas:
            size = first - first % self.replicas
            if size == 0:
                raise DataError(
                    f"The {split} split has {count} image(s), fewer than the {self.replicas} replicas of "
                    f"strategy {self.name}; expected at least one image per replica. Add images, "
                    f"or run with fewer replicas (--strategy default)."
                )
        return size

    def batch(self, dataset: Any, count: int | None = None, split: str = "train", size: int | None = None) -> Any:
        """Batch an unbatched dataset of ``count`` elements by the global batch (or ``size``)."""
        if count is None and self.replicas > 1:
            n = int(dataset.cardinality())  # negative: unknown or infinite
            count = n if n >= 0 else None
        size = self.batch_size_for(count, size, split)
        return dataset.batch(size, drop_remainder=self.static_batches)

    def steps(self, count: int, size: int | None = None) -> int:
        """Batches per epoch for ``count`` elements, as ``batch`` makes them."""
        size = self.batch_size_for(count, size)
        return max(1, count // size if self.static_batches else -(-count // size))

    def prepare(self, model: Any) -> None:
        """Keras 3's ``fit`` under MultiWorkerMirroredStrategy cannot reduce the first batch it
        reduces for shapes (keras-team/keras#20585, tensorflow/tensorflow#72388): use replica
        0's."""
        if self.name != "multiworker":
            return
        import tensorflow as tf

        strategy = self.strategy

        def local(value: Any) -> Any:
            if isinstance(value, tf.distribute.DistributedValues):
                return strategy.experimental_local_results(value)[0]
            return value

        def maybe_symbolic_build(iterator: Any = None, data_batch: Any = None) -> None:
            if iterator is not None:
                for _, _, it in iterator:
                    data_batch = tf.nest.map_structure(local, next(it))
                    break
            with strategy.scope():
                model._symbolic_build(data_batch=data_batch)

        replace_symbolic_build(model, maybe_symbolic_build)

        # Step logs are averaged with reduce("MEAN", axis=0), which fails on scalars under this
        # strategy; one-element vectors average as Keras intends.
        def as_vectors(step: Callable[[Any], Any]) -> Callable[[Any], Any]:
            return lambda data: tf.nest.map_structure(lambda v: tf.reshape(v, [1]), step(data))

        model.train_step = as_vectors(model.train_step)
        model.test_step = as_vectors(model.test_step)

    def describe(self) -> str:
        return (f"strategy {self.name} ({type(self.strategy).__name__}) with {self.replicas} "
                f"replica(s) on {', '.join(self.devices) or 'the default device'}; "
                f"--batch-size {self.global_batch_size} is the global batch: "
                f"{self.per_replica_batch_size} per replica; "
                f"precision {self.precision}"
                + ("" if self.chief else "; this worker is not the chief and writes no artifacts"))


def tf_config() -> dict[str, Any] | None:
    """The parsed ``TF_CONFIG`` environment variable, or None when it is unset."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        data = json.loads(raw)
        if not isinstance(data.get("cluster"), dict) or not isinstance(data.get("task"), dict):
            raise ValueError("it needs 'cluster' and 'task' objects")
    except (ValueError, AttributeError) as exc:
        raise ConfigError(
            f"TF_CONFIG is not valid ({exc}): {raw!r}. Expected JSON like "
            f'{{"cluster": {{"worker": ["host1:12345", "host2:12345"]}}, '
            f'"task": {{"type": "worker", "index": 0}}}}. Fix the environment variable.'
        ) from None
    return data


def resolve_strategy_name(name: str) -> str:
    """``auto``: MirroredStrategy when more than one GPU is visible, else the default one."""
    import tensorflow as tf

    name = check_name("strategy", name, STRATEGIES)
    if name != "auto":
        return name
    return "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "default"


def make_strategy(name: str = "auto") -> Any:
    """A ``tf.distribute.Strategy`` for ``name``; call it before any other TensorFlow work
    (``multiworker`` configures collective ops, allowed only before the runtime starts)."""
    import tensorflow as tf

    name = resolve_strategy_name(name)
    if name == "default":
        return tf.distribute.get_strategy()
    if name in _CACHE:
        return _CACHE[name]
    if name == "mirrored":
        # Every local GPU, or else every logical CPU device (several only when configured).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    elif name == "multiworker":
        config = tf_config()
        if config is None or not config["cluster"].get("worker") and not config["cluster"].get("chief"):
            raise ConfigError(
                "--strategy multiworker needs the TF_CONFIG environment variable to name the "
                "cluster and this process's task, e.g. TF_CONFIG='{\"cluster\": {\"worker\": "
                "[\"host1:12345\", \"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}'. "
                "Set it on every worker (see docs/scale-out.md), or use --strategy mirrored "
                "on one machine."
            )
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as exc:
            raise ConfigError(
                f"Cannot start MultiWorkerMirroredStrategy: {exc}. It must be created before "
                f"TensorFlow runs anything else in this process; run clf in a fresh process."
            ) from None
    else:  # tpu
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", ""))
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as exc:
            raise ConfigError(
                f"--strategy tpu found no TPU: {type(exc).__name__}: {exc}. Expected a TPU VM or "
                f"TPU_NAME naming a TPU. Run on a TPU host, or pick --strategy auto."
            ) from None
        strategy = tf.distribute.TPUStrategy(resolver)
    _CACHE[name] = strategy
    return strategy


def is_chief(strategy: Any = None) -> bool:
    """True on the one process that writes artifacts: the chief, or worker 0 without one
    (every process of a single-machine strategy)."""
    import tensorflow as tf

    resolver: Any = getattr(strategy, "cluster_resolver", None)
    if getattr(resolver, "task_type", None) is not None:
        task_type, task_id = resolver.task_type, resolver.task_id
        has_chief = "chief" in (resolver.cluster_spec().as_dict() or {})
    else:
        multiworker = strategy is None or isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        config = tf_config() if multiworker else None
        if not config:
            return True
        task_type, task_id = config["task"].get("type"), config["task"].get("index", 0)
        has_chief = bool(config["cluster"].get("chief"))
    return task_type == "chief" or (task_type == "worker" and int(task_id or 0) == 0 and not has_chief)


def resolve_precision(name: str, strategy_kind: str = "default") -> str:
    """``auto``: mixed_bfloat16 on a TPU, mixed_float16 on a GPU that supports it, else float32."""
    name = check_name("precision", name, PRECISIONS)
    if name != "auto":
        return name
    if strategy_kind == "tpu":
        return "mixed_bfloat16"
    import tensorflow as tf

    # Compute capability 7.0+ (Volta and later) runs float16 on tensor cores.
    details = map(tf.config.experimental.get_device_details, tf.config.list_physical_devices("GPU"))
    fast = any(tuple(d.get("compute_capability") or ()) >= (7, 0) for d in details)
    return "mixed_float16" if fast else "float32"


@contextmanager
def precision_scope(name: str) -> Iterator[str]:
    """``with precision_scope("mixed_float16"):`` build layers under Keras' global dtype
    policy (the softmax head and Preprocess layer pin float32, so outputs stay float32), then
    restore it, so a run leaves the policy unchanged for later code in the process."""
    import keras

    previous = keras.mixed_precision.global_policy()
    resolved = resolve_precision(name)
    keras.mixed_precision.set_global_policy(resolved)
    try:
        yield resolved
    finally:
        keras.mixed_precision.set_global_policy(previous)


def distribution(strategy_name_: str, precision: str, global_batch_size: int) -> Distribution:
    """Make the strategy and resolve the precision for one run."""
    kind = resolve_strategy_name(strategy_name_)
    strategy = make_strategy(kind)
    try:
        devices = tuple(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy has no device list
        devices = ()
    replicas = int(strategy.num_replicas_in_sync)
    if global_batch_size % replicas:
        # Keras needs every full batch to split evenly (see Distribution.batch).
        raise ConfigError(
            f"--batch-size {global_batch_size} does not split evenly over the {replicas} "
            f"replicas of strategy {kind}; expected a multiple of {replicas} (it is the global "
            f"batch, summed over replicas). Pass --batch-size "
            f"{max(replicas, global_batch_size - global_batch_size % replicas)}."
        )
    return Distribution(strategy, kind, replicas, devices, is_chief(strategy),
                        resolve_precision(precision, kind), global_batch_size)
