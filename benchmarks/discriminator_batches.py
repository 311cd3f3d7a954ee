"""Discriminator training steps: length-bucketed balanced batches against plain shuffled ones.

The same chitchat-cpu discriminator, the same examples (real pairs of a prepared run against
real responses from other pairs, whose lengths are those of dialogue text), the same batch size;
only the order of the examples within windows of 32 batches differs. Epochs alternate between
the two so that both see the same machine load.

    python benchmarks/discriminator_batches.py [--quick] [--run-dir runs/chitchat-cpu] [--pairs 3000] [--repeats 3]

`--quick`: 500 pairs, one epoch each.

Prints one JSON object: seconds per epoch (median) for each, their ratio, and the share of the
padded positions that hold tokens.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from seqgan.config import load_config
from seqgan.data.dataset import PairDataset
from seqgan.models import build_discriminator
from seqgan.rundir import RunDir
from seqgan.training.discriminator import DExamples, balanced_batches, d_logits, padded_lengths
from seqgan.training.generate import contexts_of
from seqgan.training.optim import make_adamw


def epoch(disc, opt, ex: DExamples, batches: list[np.ndarray]) -> float:
    started = time.perf_counter()
    for idx in batches:
        logits = d_logits(disc, [ex.contexts[i] for i in idx], [ex.responses[i] for i in idx], torch.device("cpu"))
        loss = F.binary_cross_entropy_with_logits(logits, torch.as_tensor(ex.labels[idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - started


def filled(ex: DExamples, batches: list[np.ndarray], max_len: int) -> float:
    """Tokens over padded positions (context and response, as far as D reads them) across the batches."""
    c = np.minimum([len(x) for x in ex.contexts], max_len)
    r = np.minimum([len(x) for x in ex.responses], max_len)
    return sum(int(c[b].sum() + r[b].sum()) for b in batches) / sum(len(b) * int(c[b].max() + r[b].max()) for b in batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", default="runs/chitchat-cpu", help="a prepared chitchat-cpu run")
    ap.add_argument("--pairs", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="500 pairs, one epoch each (seconds)")
    args = ap.parse_args()
    if args.quick:
        args.pairs, args.repeats = 500, 1
    run = RunDir(args.run_dir)
    if not run.split_path("train").exists():
        print(f"{args.run_dir} is not a prepared run; run 'seqgan prepare --config chitchat-cpu' first", file=sys.stderr)
        sys.exit(2)
    cfg = load_config("chitchat-cpu")
    data = PairDataset.load(run.split_path("train"))
    idx = np.random.default_rng(0).permutation(len(data))[: args.pairs]
    other = np.roll(idx, 1)
    n = len(idx)
    ex = DExamples(contexts_of(data, idx) * 2, [data.response(int(i)) for i in np.r_[idx, other]],
                   np.r_[np.ones(n), np.zeros(n)].astype(np.float32))
    lengths = padded_lengths(ex)
    torch.manual_seed(0)
    disc = build_discriminator(replace(cfg.model.discriminator, vocab_size=cfg.tokenizer.vocab_size)).train()
    opt = make_adamw(disc, cfg.discriminator.lr, cfg.discriminator.weight_decay)
    bs = cfg.discriminator.batch_size
    times = {"plain": [], "bucketed": []}
    share = {}
    for k in range(args.repeats):
        for name, lens in (("plain", None), ("bucketed", lengths)):
            batches = balanced_batches(ex.labels, bs, np.random.default_rng(k), lens)
            share[name] = filled(ex, batches, cfg.model.discriminator.max_len)
            times[name].append(epoch(disc, opt, ex, batches))
    plain, bucketed = statistics.median(times["plain"]), statistics.median(times["bucketed"])
    print(json.dumps({"examples": len(ex), "batch_size": bs, "steps_per_epoch": len(batches),
                      "plain_s_per_epoch": round(plain, 2), "bucketed_s_per_epoch": round(bucketed, 2),
                      "speedup": round(plain / bucketed, 2), "tokens_per_padded_position_plain": round(share["plain"], 3),
                      "tokens_per_padded_position_bucketed": round(share["bucketed"], 3),
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
