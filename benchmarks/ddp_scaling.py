"""MLE throughput with 1 process vs 2 processes (torchrun, gloo) on the same CPU, same global batches.

Prepares a run of the chitchat-cpu preset on the first dialogues of the chitchat corpus, then
pretrains the generator for a fixed number of steps twice from the same starting point: one
process with 2 intra-op threads, and `torchrun --nproc_per_node 2` with 1 thread each (the same
2 cores either way). Throughput is the median of the logged tokens/s windows after the first
(the first includes start-up); wall time is the whole command, process start-up included.

    python benchmarks/ddp_scaling.py [--quick] [--steps N] [--dialogues N]

Prints one JSON object: tokens_per_s for 1 and 2 processes, their ratio, wall seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def seqgan(*args: str, nproc: int = 1) -> float:
    """Run a seqgan command (under torchrun when nproc > 1); return its wall time."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    t = time.perf_counter()
    out = subprocess.run([*launcher, "-m", "seqgan", *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"seqgan {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - t


def tokens_per_s(run: Path) -> float:
    rates = [json.loads(line)["tokens_per_s"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if '"tokens_per_s"' in line]
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--dialogues", type=int, default=2000)
    args = ap.parse_args()
    steps = args.steps or (20 if args.quick else 60)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        seqgan("prepare", "--config", "chitchat-cpu", "--run-dir", str(base), f"data.max_dialogues={args.dialogues}",
               "runtime.progress=false")
        common = ("pretrain.epochs=100", f"pretrain.max_steps={steps}", "pretrain.log_every=5",
                  "runtime.progress=false", "runtime.device=cpu")
        result = {"steps": steps, "preset": "chitchat-cpu", "dialogues": args.dialogues}
        for nproc, threads in ((1, 2), (2, 1)):
            run = Path(tmp) / f"p{nproc}"
            shutil.copytree(base, run)
            wall = seqgan("pretrain", "generator", "--run-dir", str(run), *common, f"runtime.threads={threads}",
                          nproc=nproc)
            result[f"tokens_per_s_{nproc}p"] = round(tokens_per_s(run), 1)
            result[f"wall_s_{nproc}p"] = round(wall, 1)
        result["speedup_2p_over_1p"] = round(result["tokens_per_s_2p"] / result["tokens_per_s_1p"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
