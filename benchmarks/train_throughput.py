"""MLE training throughput and MFU of the chitchat-cpu generator on this machine.

Model FLOPs are counted analytically on the batches' real tokens (every matmul of the forward
pass, attention over the padded lengths included, x3 for forward + backward; padding positions
are computed but not counted); the peak is a large fp32 `torch.matmul`
timed in the same run. Batches are token-budget batches of synthetic pairs with the chitchat
corpus's length profile (context ~19, response ~20 tokens, responses cut at 40).

    python benchmarks/train_throughput.py [--quick] [--steps N]

Prints one JSON object: tokens_per_s, model_flops_per_s, matmul_peak_flops_per_s, mfu.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from seqgan.config import load_config
from seqgan.data.batching import collate, token_budget_batches
from seqgan.data.dataset import PairDataset, save_pairs
from seqgan.models import build_generator
from seqgan.training.mle import mle_loss
from seqgan.training.optim import make_adamw


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    t = time.perf_counter()
    for _ in range(reps):
        torch.matmul(a, b)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def forward_flops(cfg, B: int, S: int, T: int, ctx_tokens: int, resp_tokens: int) -> float:
    """Matmul FLOPs of one teacher-forced forward pass, counted on real tokens only (padding
    positions are computed but not counted); S and T are the padded lengths attended over."""
    H, F, E, V, L = cfg.hidden_dim, cfg.ff_dim, cfg.embed_dim, cfg.vocab_size, cfg.num_layers
    proj = 2 * E * H if E != H else 0
    enc = ctx_tokens * (L * (8 * H * H + 4 * H * F + 4 * S * H) + proj)
    dec_tok = L * (8 * H * H + 4 * T * H + 4 * H * H + 4 * S * H + 4 * H * F) + proj
    out = 2 * H * E + 2 * E * V if E != H else 2 * H * V
    cross_kv = ctx_tokens * L * 4 * H * H
    return enc + resp_tokens * (dec_tok + out) + cross_kv


def synthetic_pairs(path: Path, n: int, vocab: int, seed: int = 0) -> PairDataset:
    rng = np.random.default_rng(seed)
    c_len = np.clip(rng.geometric(1 / 19, n), 1, 40)
    r_len = np.clip(rng.geometric(1 / 20, n), 1, 39)
    ctx = [list(rng.integers(4, vocab, k)) for k in c_len]
    resp = [list(rng.integers(4, vocab, k)) + [3] for k in r_len]
    save_pairs(path, ctx, resp, list(range(n)), [""] * n, [""] * n)
    return PairDataset.load(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer steps (under a minute)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--preset", default="chitchat-cpu")
    ap.add_argument("--batch-tokens", type=int, default=None, help="default: the preset's")
    args = ap.parse_args()
    steps = args.steps or (8 if args.quick else 40)
    cfg = load_config(args.preset)
    gcfg = replace(cfg.model.generator, vocab_size=cfg.tokenizer.vocab_size)
    torch.manual_seed(0)
    model = build_generator(gcfg)
    opt = make_adamw(model, 1e-3, 0.01)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data = synthetic_pairs(Path(tmp) / "s.npz", 20000, gcfg.vocab_size)
        budget = args.batch_tokens or cfg.pretrain.batch_tokens
        batches = token_budget_batches(data.lengths(), budget, shuffle=True, seed=0)
        peak = matmul_peak()
        flops = tokens = 0.0
        elapsed = 0.0
        for i in range(steps + 2):
            b = collate(data, batches[i % len(batches)])
            t = time.perf_counter()
            loss, _ = mle_loss(model, b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            dt = time.perf_counter() - t
            if i >= 2:  # warm-up excluded
                B, S = b["src"].shape
                T = b["tgt_in"].shape[1]
                n_ctx, n_resp = int(b["src_mask"].sum()), int(b["tgt_mask"].sum())
                flops += 3 * forward_flops(gcfg, B, S, T, n_ctx, n_resp)
                tokens += n_ctx + n_resp
                elapsed += dt
        peak = max(peak, matmul_peak())
    print(json.dumps({
        "tokens_per_s": round(tokens / elapsed, 1),
        "model_flops_per_s": round(flops / elapsed / 1e9, 2) * 1e9,
        "matmul_peak_flops_per_s": round(peak / 1e9, 2) * 1e9,
        "mfu": round(flops / elapsed / peak, 3),
        "steps": steps, "batch_tokens": budget, "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }))


if __name__ == "__main__":
    main()
