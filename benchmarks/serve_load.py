"""Serving under load: throughput and latency of `seqgan serve` with micro-batching on and off.

Starts the server itself (a subprocess on a free loopback port) twice against the same run
directory: micro-batching on (`--max-batch-size 16 --max-wait-ms 5` by default), then off
(`--max-batch-size 1`). Each time N concurrent clients (asyncio + httpx, one process) send
POST /v1/respond in a closed loop for a fixed time; the first second is a warm-up and is not
counted. Throughput counts the answers that arrive in the counted window; latencies, those of
them sent in it too. Every request has the same sampling options, so all of them may share batches.
Traffic goes to 127.0.0.1 only, and every loop is bounded in time and in count.

    python benchmarks/serve_load.py [--run-dir DIR] [--clients 16] [--seconds 30] [--quick] [--threads N]

Without --run-dir a tiny run is built first in a temporary folder (`seqgan run --config tiny` on
a small synthetic corpus). Prints one JSON object: for "batched" and "unbatched" the requests
counted, throughput (requests/s), p50/p99 latency (ms), errors and the server's mean batch size;
and the ratios batched / unbatched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

WORDS = ("hello hi how are you doing today fine thanks good great what about weekend plans movie "
         "music coffee tea school work home dog cat weather sunny rain yes no maybe sure really nice").split()
MAX_REQUESTS = 200_000  # a hard bound on one phase, whatever the duration


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))


def build_tiny_run(root: Path) -> Path:
    """A finished tiny run made by the real CLI, as the tests make theirs."""
    rng = random.Random(1)
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"dialogue": [sentence(rng) for _ in range(rng.randint(3, 7))]}) + "\n"
                              for _ in range(80)), encoding="utf-8")
    run = root / "run"
    subprocess.run([sys.executable, "-m", "seqgan", "run", "--config", "tiny", "--run-dir", str(run),
                    "data.corpus=jsonl", f"data.path={corpus}"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, max_batch_size: int, max_wait_ms: float, log: Path,
                 overrides: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "seqgan", "serve", "--run-dir", str(run), "--host", "127.0.0.1",
                                 "--port", str(port), "--max-batch-size", str(max_batch_size),
                                 "--max-wait-ms", str(max_wait_ms), *overrides],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}: {log.read_text().strip()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start within 120 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def load(url: str, clients: int, seconds: float, warmup: float, generator: str, seed: int) -> dict:
    """Closed-loop clients for warmup + seconds. Throughput: answers that arrive inside the counted
    window, over its length; latencies: those of them sent inside it too."""
    rng = random.Random(seed)
    contexts = [[sentence(rng)] for _ in range(256)]
    latencies: list[float] = []
    errors = sent = done = 0
    t_start = time.perf_counter()
    t_count, t_end = t_start + warmup, t_start + warmup + seconds

    async def client(i: int, http: httpx.AsyncClient) -> None:
        nonlocal errors, sent, done
        k = i
        while time.perf_counter() < t_end and sent < MAX_REQUESTS:
            body = {"context": contexts[k % len(contexts)], "generator": generator}
            k += clients
            sent += 1
            t0 = time.perf_counter()
            try:
                r = await http.post("/v1/respond", json=body)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            t1 = time.perf_counter()
            if t_count <= t1 <= t_end:  # throughput: every answer inside the counted window
                done += ok
                errors += not ok
                if ok and t0 >= t_count:  # latency: requests sent inside it too
                    latencies.append((t1 - t0) * 1000)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        info = (await http.get("/v1/info")).json()["batching"]
    latencies.sort()
    n = len(latencies)
    return {
        "requests": done,
        "errors": errors,
        "throughput_rps": round(done / seconds, 1),
        "p50_ms": round(statistics.median(latencies), 1) if n else None,
        "p99_ms": round(latencies[min(n - 1, int(0.99 * n))], 1) if n else None,
        "server_batches": info["batches"],
        "server_mean_batch_size": info["mean_batch_size"],
        "server_largest_batch": info["largest_batch"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", help="a run with a generator (default: build a tiny run in a temp folder)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured seconds per mode (default 30)")
    ap.add_argument("--quick", action="store_true", help="5 measured seconds per mode")
    ap.add_argument("--max-batch-size", type=int, default=16, help="batching on: largest batch (default 16)")
    ap.add_argument("--max-wait-ms", type=float, default=5.0, help="batching on: wait for a batch (default 5)")
    ap.add_argument("--generator", default="pretrained", choices=["pretrained", "adversarial"])
    ap.add_argument("--threads", type=int, default=None,
                    help="the server's torch threads (runtime.threads; default: the run's config)")
    args = ap.parse_args()
    if not 1 <= args.clients <= 256:
        raise SystemExit("--clients must be between 1 and 256")
    seconds = 5.0 if args.quick else args.seconds
    if not 0 < seconds <= 600:
        raise SystemExit("--seconds must be in (0, 600]")

    with tempfile.TemporaryDirectory(prefix="serve_load.") as tmp:
        tmp_path = Path(tmp)
        if args.run_dir:
            run = Path(args.run_dir)
        else:
            print("building a tiny run ...", file=sys.stderr, flush=True)
            run = build_tiny_run(tmp_path)
        overrides = [] if args.threads is None else [f"runtime.threads={args.threads}"]
        out: dict = {"run": str(run) if args.run_dir else "tiny (built)", "clients": args.clients,
                     "seconds": seconds, "cpus": os.cpu_count(), "server_overrides": overrides}
        modes = {"batched": (args.max_batch_size, args.max_wait_ms), "unbatched": (1, 0.0)}
        for name, (size, wait) in modes.items():
            print(f"{name}: --max-batch-size {size} --max-wait-ms {wait:g}, {args.clients} clients, "
                  f"{seconds:g} s ...", file=sys.stderr, flush=True)
            proc, url = start_server(run, size, wait, tmp_path / f"{name}.log", overrides)
            try:
                out[name] = {"max_batch_size": size, "max_wait_ms": wait,
                             **asyncio.run(load(url, args.clients, seconds, 1.0, args.generator, seed=0))}
            finally:
                stop_server(proc)
    b, u = out["batched"], out["unbatched"]
    out["throughput_ratio"] = round(b["throughput_rps"] / u["throughput_rps"], 2) if u["throughput_rps"] else None
    if b["p50_ms"] and u["p50_ms"]:
        out["p50_ratio"] = round(b["p50_ms"] / u["p50_ms"], 2)
        out["p99_ratio"] = round(b["p99_ms"] / u["p99_ms"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
