"""Decoding speed: the original project's way vs ours, same weights (the chitchat-cpu generator).

(a) naive: one example at a time; the context is encoded once per example, then the whole
    decoder is re-run over the prefix for every new token (no cache), as the original project
    decodes;
(b) ours: a batch of 64, key/value cached (`seqgan.models.sampling.sample`).
Also reported: naive decoding that re-runs the whole model (encoder included) for every
token, which is what calling `model(context, prefix)` in a loop does.
Both sample 32 tokens per example at temperature 1 with eos disabled (random weights would
otherwise stop at arbitrary lengths), so every row decodes its full length. Rates are medians
over repetitions (per example for the naive loop), which keeps a busy shared CPU from
skewing one side. Before timing, greedy decoding of one example is checked to give the same
tokens both ways.

    python benchmarks/sampling.py [--quick] [--threads N]

Prints one JSON object: naive_tokens_per_s, cached_tokens_per_s, speedup (cached / naive),
naive_whole_model_tokens_per_s, speedup_vs_whole_model, and the workload.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import torch

from seqgan.config import load_config
from seqgan.models.generator import TransformerGenerator
from seqgan.models.sampling import pick_tokens, sample

BOS = 2


@torch.no_grad()
def naive_decode(gen: TransformerGenerator, src: torch.Tensor, steps: int, temperature: float,
                 g: torch.Generator | None, reencode: bool = False) -> torch.Tensor:
    """One example (1, S) -> (1, steps): every token re-runs the decoder over the whole prefix
    (and the encoder over the context too when `reencode`, i.e. the whole model per token)."""
    memory = gen.encode(src, None)
    y = torch.full((1, 1), BOS)
    for _ in range(steps):
        if reencode:
            memory = gen.encode(src, None)
        logits = gen.decode(memory, None, y)[:, -1]  # (1, V)
        y = torch.cat([y, pick_tokens(logits, temperature, generator=g)[:, None]], 1)
    return y[:, 1:]


def naive_rate(gen: TransformerGenerator, src: torch.Tensor, steps: int, g: torch.Generator,
               reencode: bool) -> float:
    """Median tokens/s of naive decoding, one example (row of src) at a time."""
    times = []
    for i in range(src.shape[0]):
        t = time.perf_counter()
        naive_decode(gen, src[i : i + 1], steps, 1.0, g, reencode)
        times.append(time.perf_counter() - t)
    return steps / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and naive examples (under a minute)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = load_config("chitchat-cpu")
    V = 4000
    torch.manual_seed(0)
    gen = TransformerGenerator(replace(cfg.model.generator, vocab_size=V, dropout=0.0)).eval()
    B, S, steps = 64, 20, 32
    src = torch.randint(4, V, (B, S))
    mask = torch.ones_like(src, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)

    # the two ways decode the same model: greedy tokens agree
    ours = sample(gen, src[:1], mask[:1], max_len=8, strategy="greedy", eos_id=None)
    assert torch.equal(ours, naive_decode(gen, src[:1], 8, 0.0, None)), "naive and cached decoding disagree"

    reps = 3 if args.quick else 7
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        out = sample(gen, src, mask, max_len=steps, eos_id=None, generator=g)
        times.append(time.perf_counter() - t)
    assert out.shape == (B, steps)
    cached = B * steps / statistics.median(times)

    n_naive = 3 if args.quick else 16
    naive = naive_rate(gen, src[:n_naive], steps, g, reencode=False)
    whole = naive_rate(gen, src[:n_naive], steps, g, reencode=True)
    print(json.dumps({"naive_tokens_per_s": round(naive, 1), "cached_tokens_per_s": round(cached, 1),
                      "speedup": round(cached / naive, 1), "naive_whole_model_tokens_per_s": round(whole, 1),
                      "speedup_vs_whole_model": round(cached / whole, 1), "batch": B, "tokens": steps, "context": S,
                      "vocab_size": V, "parameters": gen.num_parameters(), "naive_examples": n_naive,
                      "cached_repetitions": reps, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
