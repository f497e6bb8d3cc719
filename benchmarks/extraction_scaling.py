"""Feature extraction spread over devices and workers (clf.train.sharding), against one device.

    python benchmarks/extraction_scaling.py replicas [--cpus 2] [--backbone vgg16 --size 224 ...]
    python benchmarks/extraction_scaling.py workers  [--backbone mobilenet_v2_035 --size 96 ...]

``replicas``: in one process, clf's extraction path (decode, resize, Preprocess, backbone)
over the same generated JPEGs on one device, then split over every local replica of a
MirroredStrategy (every GPU; on a CPU machine ``--cpus N`` logical devices, which share
the same cores and so cannot be faster): images/s of each, their ratio, rows per replica.

``workers``: a one-worker ``clf.run`` beside a two-worker ``--strategy multiworker`` run
over loopback on the same generated data (each with an empty feature cache): images each
worker extracted, extraction seconds and wall seconds of each process. On one machine the
workers share its cores: the point is that the work is divided, not a speed-up.

Images are generated and weights random (``--weights none``): throughput does not depend
on the weights' values.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).parent))
from gpu_throughput import make_images  # noqa: E402  (the same generated JPEGs)


def replicas(args, data: Path) -> None:
    import tensorflow as tf

    if args.cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpus)
    from clf.host.manager import get_host
    from clf.train.distribute import distribution
    from clf.train.features import extract, make_extractor
    from clf.train.model import Classifier, build_backbone
    from clf.train.sharding import ReplicaForward

    host = get_host(())
    dist = distribution("mirrored", "float32", args.batch)
    backbone = host.backbones.get(args.backbone)
    size = (args.size, args.size)
    with dist.strategy.scope():
        base = build_backbone(backbone, size, None)
    extractor = make_extractor(Classifier(None, base, None, backbone.preprocess), size)
    bundle = host.loaders.get("directory").load(str(data), image_size=size, seed=0, validation_split=0.0)
    n = len(bundle.splits["train"])
    spread = ReplicaForward(dist.strategy, extractor)

    def rate(forward) -> float:
        extract(extractor, bundle.train, args.batch, forward=forward)  # warm-up: tracing, autotuning
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            extract(extractor, bundle.train, args.batch, forward=forward)
            best = min(best, time.perf_counter() - t0)
        return n / best

    one = rate(None)
    spread.take_rows()
    every = rate(spread)
    rows = [r // (args.repeats + 1) for r in spread.take_rows()]
    print(f"{args.backbone} at {args.size}x{args.size}, {n} images, batch {args.batch}; "
          f"devices: {', '.join(dist.devices)}")
    print(f"extract on 1 device:            {one:8.1f} img/s")
    print(f"extract on {dist.replicas} replicas (mirrored): {every:8.1f} img/s  (x{every / one:.2f}); "
          f"rows per replica per pass: {rows}")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _launch(config: dict, out: Path, tf_config: dict | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    path = out.with_suffix(".config.json")
    path.write_text(json.dumps(config))
    return subprocess.Popen([sys.executable, __file__, "_child", str(path), str(out)], env=env)


def workers(args, data: Path, tmp: Path) -> None:
    def config(name: str, strategy: str) -> dict:
        return {"backbone": args.backbone, "data": str(data), "weights": "none", "epochs": 1,
                "batch_size": args.batch, "image_size": args.size, "augment": False, "verify": False,
                "output": str(tmp / name), "strategy": strategy, "cache_dir": str(tmp / f"cache-{name}"),
                "validation_split": 0.1}

    results = {}
    for name, count in (("one", 1), ("two", 2)):
        t0 = time.perf_counter()
        if count == 1:
            procs = [_launch(config(name, "default"), tmp / f"{name}-0.json", None)]
        else:
            hosts = [f"127.0.0.1:{p}" for p in _free_ports(count)]
            procs = [_launch(config(name, "multiworker"), tmp / f"{name}-{i}.json",
                             {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}})
                     for i in range(count)]
        for p in procs:
            if p.wait(timeout=args.timeout) != 0:
                raise SystemExit(f"a {name}-worker process failed (exit {p.returncode})")
        results[name] = ([json.loads((tmp / f"{name}-{i}.json").read_text()) for i in range(count)],
                         time.perf_counter() - t0)

    print(f"{args.backbone} at {args.size}x{args.size}, {args.images} generated images, batch {args.batch}")
    for name, (outs, wall) in results.items():
        for i, r in enumerate(outs):
            counts = {s: c.get("by_worker", [c["extracted"]]) for s, c in r["extraction"].items()}
            print(f"{name}-worker run, worker {i}: images extracted per worker {counts}; extract "
                  f"{r['extract_seconds']:.1f}s, process {r['wall_seconds']:.1f}s")
        print(f"{name}-worker run: {wall:.1f}s wall for the whole run")


def child(config_path: str, out_path: str) -> int:
    t0 = time.perf_counter()
    import clf

    result = clf.run(clf.RunConfig.from_mapping(json.loads(Path(config_path).read_text())))
    Path(out_path).write_text(json.dumps({"extraction": result.extraction,
                                          "extract_seconds": result.timings.get("extract", 0.0),
                                          "wall_seconds": time.perf_counter() - t0}))
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        return child(*sys.argv[2:4])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("replicas", "workers"))
    parser.add_argument("--backbone", default="mobilenet_v2_035")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=1, help="replicas mode without GPUs: logical CPU devices")
    parser.add_argument("--timeout", type=int, default=900, help="workers mode: seconds per run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clf-extraction-") as tmp:
        data = make_images(Path(tmp) / "data", args.images, args.size)
        if args.mode == "replicas":
            replicas(args, data)
        else:
            workers(args, data, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
