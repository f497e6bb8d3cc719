"""Benchmark: ``clf serve``'s micro-batching against one model call per request, in one run.

For each artifact format, server processes on free loopback ports, all up at once and
measured in turn (cells rotate between them, so a change in the machine's load hits all):
  batched:   ``clf serve`` with its defaults (up to --max-batch images a model call, a
             --window-ms window);
  baseline:  ``clf serve --max-batch 1 --batch-window-ms 0``: one model call per request,
             same decoding, HTTP stack and runtime, only the batching differs;
  naive:     (Keras formats) a bare Starlette route that decodes the upload the same way
             and calls Keras' ``model.predict`` on it, one request at a time: the
             one-``model.predict``-per-request server the issue names.
Then 1, 8 and 32 concurrent clients (asyncio + httpx in this process, sharing the cores
with the servers) each send real photos as raw JPEG bytes back to back. Per cell:
requests/s, p50/p99 latency, and the server's CPU time per request (from /proc), which
unlike wall time hardly depends on what else runs on the machine. Bounded: at most
--requests requests or --seconds seconds a cell and round, loopback only. Before that, the
CPU cost per image of decoding and of each format's model call at batch 1, 8 and 32: what
batching can and cannot save.

The model is mobilenet_v2_035 at 224 px with the real ImageNet weights from the shared
folder (the head is trained for one epoch on a few generated images: its accuracy does not
change the cost of a prediction). Photos: 32 of the shared hymenoptera validation images
(about 500x375 JPEGs), else generated ones of that size.

Usage (from the repository root, after ``pip install -e ".[cpu,test]"``):
    python benchmarks/serve.py                                # all five formats
    python benchmarks/serve.py --formats keras,tflite --clients 1,32 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside a clone (CI), ../../shared beside a worktree under wt/.
SHARED = next((p / "shared" for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared").is_dir()),
              ROOT.parent / "shared")
DEFAULT_WEIGHTS = SHARED / "weights" / "mobilenet_v2_0.35_224_imagenet_notop.weights.h5"
PHOTOS = SHARED / "datasets" / "hymenoptera" / "val"
FORMATS = "keras,h5,savedmodel,tflite,onnx"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--formats", default=FORMATS, help=f"comma-separated (default {FORMATS})")
    p.add_argument("--clients", default="1,8,32", help="concurrent clients per cell")
    p.add_argument("--requests", type=int, default=200, help="most requests a cell, each round")
    p.add_argument("--seconds", type=float, default=10.0, help="most seconds a cell, each round")
    p.add_argument("--rounds", type=int, default=2, help="alternations of the two servers a cell")
    p.add_argument("--backbone", default="mobilenet_v2_035")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.exists() else "none")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--max-batch", type=int, default=32, help="the batched server's --max-batch")
    p.add_argument("--window-ms", type=float, default=5.0, help="the batched server's --batch-window-ms")
    p.add_argument("--run", help="an existing clf run folder to serve (skips training)")
    p.add_argument("--naive-server", nargs=2, metavar=("RUN", "FORMAT"), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def make_run(args, root: Path) -> Path:
    """A run folder with every requested format, from one epoch on generated images."""
    import clf
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(["ant", "bee"]):
        for i in range(10):
            img = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
            img[c * 128:(c + 1) * 128, :, c] = 230
            (root / "data" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / "data" / name / f"{i}.jpg", quality=90)
    result = clf.run(clf.RunConfig(backbone=args.backbone, data=str(root / "data"), weights=args.weights,
                                   image_size=args.image_size, epochs=1, augment=False, cache=False,
                                   verify=False, export=args.formats, output=str(root / "run")))
    return result.run_dir


def photos(limit: int = 32) -> list[bytes]:
    files = sorted(PHOTOS.rglob("*.jpg")) if PHOTOS.exists() else []
    files = files[:: max(1, len(files) // limit)][:limit]  # spread over both classes
    if files:
        return [f.read_bytes() for f in files]
    from PIL import Image

    rng, out = np.random.default_rng(1), []
    for _ in range(limit):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


class Server:
    """``command`` (given ``--port``) as a child process, once it answers /health."""

    def __init__(self, command: list[str], fmt: str, log: Path):
        import httpx

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc = subprocess.Popen([*command, "--port", str(self.port)], stdout=log.open("w"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"clf serve --format {fmt} exited with {self.proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        sys.exit(f"clf serve --format {fmt} did not start within 300 s:\n{log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def naive_server(run_dir: str, fmt: str, port: int) -> None:
    """What a first server looks like: each request decoded (clf's decoder, so only the
    model call differs) and passed to Keras' ``model.predict``, one at a time."""
    import threading

    import clf
    import uvicorn
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    predictor = clf.load_predictor(run_dir, fmt=fmt)
    model, lock = predictor.model, threading.Lock()

    def classify(data: bytes):
        x = predictor.decode(data)[None]
        with lock:  # one model call at a time, like a single sync worker
            return model.predict(x, verbose=0)[0]

    async def predict(request):
        probs = await run_in_threadpool(classify, await request.body())
        i = int(np.argmax(probs))
        return JSONResponse({"class": predictor.class_names[i], "probability": float(probs[i])})

    async def health(request):
        return JSONResponse({"status": "ok"})

    classify(_tiny_png())  # the first call traces, as clf serve's warm-up does
    app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _tiny_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 80, 40)).save(buf, format="PNG")
    return buf.getvalue()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(url: str, pid: int, payloads: list[bytes], clients: int, requests: int, seconds: float) -> dict:
    """``clients`` workers posting back to back until ``requests`` are sent or ``seconds``
    pass: the answers' latencies, the time taken and the server's CPU time meanwhile."""
    import httpx

    latencies: list[float] = []
    failures: dict[str, int] = {}
    sent = 0

    async def worker(client, w: int, count: int, until: float | None, record: bool):
        nonlocal sent
        i = w
        while sent < count and (until is None or time.perf_counter() < until):
            sent += 1
            body = payloads[i % len(payloads)]
            i += clients
            t = time.perf_counter()
            try:
                res = await client.post(url + "/predict", content=body, headers={"Content-Type": "image/jpeg"})
                status = str(res.status_code)
            except httpx.TransportError as exc:  # counted, not fatal: the cell goes on
                status = type(exc).__name__
            if not record:
                continue
            if status == "200":
                latencies.append(time.perf_counter() - t)
            else:
                failures[status] = failures.get(status, 0) + 1

    limits = httpx.Limits(max_connections=clients)
    # Warm-up (not measured): the server meets concurrent requests once. Its connections
    # are not reused: some sit idle past uvicorn's 5 s keep-alive while the slowest warm-up
    # request finishes, and a request sent as the server closes one fails.
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(*(worker(client, w, 2 * clients, None, False) for w in range(clients)))
    sent = 0
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        cpu, start = cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(worker(client, w, requests, start + seconds, True) for w in range(clients)))
        elapsed, cpu = time.perf_counter() - start, cpu_seconds(pid) - cpu
    return {"latencies": latencies, "elapsed": elapsed, "cpu": cpu, "failures": failures}


def summary(cells: list[dict]) -> dict:
    """Rounds of one cell pooled: requests/s, p50/p99 latency, server CPU ms a request."""
    lat = np.array([x for c in cells for x in c["latencies"]] or [np.nan])
    n, elapsed, cpu = len(lat), sum(c["elapsed"] for c in cells), sum(c["cpu"] for c in cells)
    failures: dict[str, int] = {}
    for c in cells:
        for code, k in c["failures"].items():
            failures[code] = failures.get(code, 0) + k
    return {"rps": n / elapsed, "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "n": n, "cpu_ms": 1000 * cpu / max(n, 1), "failures": failures,
            "rounds": [len(c["latencies"]) / c["elapsed"] for c in cells]}


def components(run_dir: Path, formats: list[str], payloads: list[bytes]) -> dict:
    """CPU time per image of what every request pays, in this process: decoding, and each
    format's model call at batch sizes 1, 8 and 32 (plus Keras' own ``model.predict`` on
    one image, what a naive server calls). CPU time, unlike wall time, hardly depends on
    how many other processes share the cores."""
    import clf

    def cpu_ms(fn, images: int, repeat: int) -> float:
        fn()
        start = time.process_time()
        for _ in range(repeat):
            fn()
        return 1000 * (time.process_time() - start) / (repeat * images)

    out: dict = {}
    for fmt in formats:
        p = clf.load_predictor(run_dir, fmt=fmt)
        if "decode" not in out:
            out["decode"] = cpu_ms(lambda: [p.decode(b) for b in payloads], len(payloads), 2)
        x = np.stack([p.decode(b) for b in payloads[:32]])
        out[fmt] = {n: cpu_ms(lambda: p.predict_batch(x[:n]), n, max(3, 64 // n)) for n in (1, 8, 32)}
        if hasattr(p, "model"):
            out[fmt]["model.predict"] = cpu_ms(lambda: p.model.predict(x[:1], verbose=0), 1, 5)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.naive_server:
        naive_server(*args.naive_server, args.port)
        return 0
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    clients = [int(c) for c in args.clients.split(",")]
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start "
          f"(other processes share these cores: compare ratios within this run)", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="clf-bench-serve-"))
    t = time.perf_counter()
    run_dir = Path(args.run) if args.run else make_run(args, tmp)
    print(f"run folder {run_dir} ({args.backbone}, {args.image_size} px, weights {Path(args.weights).name}; "
          f"{time.perf_counter() - t:.0f} s)", flush=True)
    payloads = photos()
    print(f"{len(payloads)} photos, {np.mean([len(p) for p in payloads]) / 1024:.0f} KiB on average", flush=True)
    parts = components(run_dir, formats, payloads)
    print(f"\nCPU ms an image (this process): decoding {parts['decode']:.1f}; the model at batch 1 / 8 / 32, and "
          f"the ceiling (decode + batch 1) / (decode + batch 32) on what micro-batching can save:", flush=True)
    for fmt in formats:
        m = parts[fmt]
        naive = f"; Keras model.predict on one image {m['model.predict']:.1f}" if "model.predict" in m else ""
        print(f"  {fmt:10s} {m[1]:5.1f} / {m[8]:5.1f} / {m[32]:5.1f}  ceiling "
              f"{(parts['decode'] + m[1]) / (parts['decode'] + m[32]):.2f}x{naive}", flush=True)
    print(flush=True)
    serve = [sys.executable, "-m", "clf.cli", "serve", str(run_dir)]
    rows = []
    for fmt in formats:
        modes = {"batched": [*serve, "--format", fmt, "--max-batch", str(args.max_batch),
                             "--batch-window-ms", str(args.window_ms)],
                 "baseline": [*serve, "--format", fmt, "--max-batch", "1", "--batch-window-ms", "0"]}
        if fmt in ("keras", "h5"):  # Keras artifacts: the literal model.predict server too
            modes["naive"] = [sys.executable, str(Path(__file__).resolve()), "--naive-server", str(run_dir), fmt]
        # The servers up at once (idle while another is measured), cells rotating between
        # them, so that a change in the machine's load hits them alike.
        t = time.perf_counter()
        servers: dict[str, Server] = {}
        try:
            for mode, command in modes.items():
                servers[mode] = Server(command, fmt, tmp / f"{fmt}-{mode}.log")
            print(f"{fmt}: {len(servers)} servers up in {time.perf_counter() - t:.0f} s", flush=True)
            results = {}
            for c in clients:
                cells = {mode: [] for mode in modes}
                for r in range(args.rounds):  # a different one first in each round
                    order = list(modes)[r % len(modes):] + list(modes)[:r % len(modes)]
                    for mode in order:
                        srv = servers[mode]
                        cells[mode].append(asyncio.run(load(srv.url, srv.proc.pid, payloads, c,
                                                            args.requests, args.seconds)))
                for mode in modes:
                    r = results[mode, c] = summary(cells[mode])
                    bad = f", failures {r['failures']}" if r["failures"] else ""
                    rounds = "/".join(f"{x:.1f}" for x in r["rounds"])
                    print(f"{fmt:10s} {mode:8s} {c:3d} clients: {r['rps']:6.1f} req/s ({rounds})  p50 "
                          f"{r['p50'] * 1000:5.0f} ms  p99 {r['p99'] * 1000:5.0f} ms  server CPU {r['cpu_ms']:5.1f} "
                          f"ms/request  ({r['n']} requests{bad}; load {os.getloadavg()[0]:.1f})", flush=True)
        finally:
            for server in servers.values():
                server.stop()
        for c in clients:
            rows.append((fmt, c, results["batched", c], results["baseline", c], results.get(("naive", c))))

    def cell(r) -> str:
        return f"{r['rps']:.1f} | {r['p50'] * 1000:.0f} / {r['p99'] * 1000:.0f} | {r['cpu_ms']:.1f}"

    print("\n| format | clients | batched req/s | p50 / p99 ms | CPU ms/req | one call a request: req/s | p50 / p99 ms "
          "| CPU ms/req | naive model.predict: req/s | p50 / p99 ms | CPU ms/req | req/s vs one call (CPU) "
          "| req/s vs naive (CPU) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for fmt, c, b, n, v in rows:
        naive = cell(v) if v else "- | - | -"
        vs_naive = f"{b['rps'] / v['rps']:.2f}x ({v['cpu_ms'] / b['cpu_ms']:.2f}x)" if v else "-"
        print(f"| {fmt} | {c} | {cell(b)} | {cell(n)} | {naive} | {b['rps'] / n['rps']:.2f}x "
              f"({n['cpu_ms'] / b['cpu_ms']:.2f}x) | {vs_naive} |")
    top = max(clients)
    print(f"\ntarget at {top} clients: >= 3x the baseline's requests/s with p99 < 1 s. In brackets, the "
          f"ratio of the servers' CPU time a request, which decides requests/s when a server has its "
          f"cores to itself (this shared machine does not give it that).")
    for fmt, c, b, n, v in rows:
        if c == top:
            for name, base in (("one call a request", n), ("naive model.predict", v)):
                if base:
                    ok = b["rps"] >= 3 * base["rps"] and b["p99"] < 1
                    print(f"  {fmt:10s} vs {name:19s}: {b['rps'] / base['rps']:.2f}x req/s "
                          f"({base['cpu_ms'] / b['cpu_ms']:.2f}x CPU), p99 {b['p99'] * 1000:.0f} ms: "
                          f"{'met' if ok else 'MISSED'}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
