"""Decoding speed: the original project's way vs ours, same weights (the chitchat-cpu generator).

(a) naive: one example at a time, re-running the whole decoder over the prefix for every new
    token (no cache), as the original project decodes;
(b) ours: a batch of 64, key/value cached.
Both decode 32 tokens per example (eos disabled so every row runs to full length).

    python benchmarks/sampling.py [--quick]

Prints one JSON object: naive_tokens_per_s, cached_tokens_per_s, speedup.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

from seqgan.config import load_config
from seqgan.models import build_generator
from seqgan.models.sampling import pick_tokens, sample


@torch.no_grad()
def naive_decode(gen, src: torch.Tensor, steps: int, g: torch.Generator) -> torch.Tensor:
    """One example (1, S): every token re-runs encoder and decoder over the whole prefix."""
    y = torch.full((1, 1), 2)
    for _ in range(steps):
        logits = gen(src, torch.ones_like(src, dtype=torch.bool), y)[:, -1]
        y = torch.cat([y, pick_tokens(logits, 1.0, generator=g)[:, None]], 1)
    return y[:, 1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    cfg = load_config("chitchat-cpu")
    torch.manual_seed(0)
    gen = build_generator(replace(cfg.model.generator, vocab_size=cfg.tokenizer.vocab_size)).eval()
    B, S, steps = 64, 20, 32
    src = torch.randint(4, cfg.tokenizer.vocab_size, (B, S))
    g = torch.Generator().manual_seed(0)
    sample(gen, src[:4], torch.ones(4, S, dtype=torch.bool), max_len=4, generator=g)  # warm-up
    reps = 1 if args.quick else 3
    t = time.perf_counter()
    for _ in range(reps):
        out = sample(gen, src, torch.ones_like(src, dtype=torch.bool), max_len=steps, eos_id=None, generator=g)
    cached = B * steps * reps / (time.perf_counter() - t)
    assert out.shape == (B, steps)
    n_naive = 4 if args.quick else 16
    t = time.perf_counter()
    for i in range(n_naive):
        naive_decode(gen, src[i : i + 1], steps, g)
    naive = n_naive * steps / (time.perf_counter() - t)
    print(json.dumps({"naive_tokens_per_s": round(naive, 1), "cached_tokens_per_s": round(cached, 1),
                      "speedup": round(cached / naive, 1), "batch": B, "tokens": steps,
                      "naive_examples": n_naive, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
