"""Oracle benchmark speed: sampling 9,984 x 20 tokens from the oracle (vocab 5000), and one
epoch of the paper's CNN discriminator (10k real + 10k negatives, batch 64, fwd + bwd + Adam;
the negatives are uniform random tokens: the epoch's cost does not depend on what they hold).

(a) naive sampling: a per-row loop with torch.multinomial at every step (timed on a few rows
    and extrapolated); (b) ours: all rows in large batches, inverse-CDF sampling.
(c) the CNN epoch through the experiment's own D training (`discriminator_epochs`: L2 term, the
    step's finiteness check and clip), with the fused Adam kernel the experiment uses and,
    side by side, with torch's per-tensor Adam loop.

    python benchmarks/oracle_sampling.py [--quick]

Prints one JSON object: naive_s, ours_s, speedup, samples, cnn_epoch_s,
cnn_epoch_per_tensor_adam_s, cnn_speedup.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from seqgan.config import load_config
from seqgan.oracle.experiment import discriminator_epochs, discriminator_for
from seqgan.oracle.oracle import make_oracle, sample_oracle
from seqgan.training.optim import adam


@torch.no_grad()
def naive_rows(oracle, rows: int, T: int, g: torch.Generator) -> None:
    for _ in range(rows):
        st = oracle.start(None, None, batch_size=1)
        tok = torch.zeros(1, 1, dtype=torch.long)
        for _ in range(T):
            probs = torch.softmax(oracle.step(st, tok)[:, -1], -1)
            tok = torch.multinomial(probs, 1, generator=g)


def cnn_epoch(real: torch.Tensor, fake: torch.Tensor, fused: bool) -> float:
    """Seconds for one epoch of the experiment's D training over real + fake, after a short warm-up."""
    cfg = load_config("oracle-paper")
    o = cfg.oracle
    torch.manual_seed(0)
    d = discriminator_for(cfg)
    opt = adam(d.parameters(), o.d_lr) if fused else torch.optim.Adam(d.parameters(), lr=o.d_lr, foreach=False)
    cpu = torch.device("cpu")
    discriminator_epochs(d, opt, real[:64], fake[:64], 1, o, np.random.default_rng(0), cpu)
    t = time.perf_counter()
    discriminator_epochs(d, opt, real, fake, 1, o, np.random.default_rng(1), cpu)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    N, T = 9984, 20
    oracle = make_oracle(5000, 32, 32, seed=0)
    g = torch.Generator().manual_seed(0)
    sample_oracle(oracle, 256, T, generator=g)  # warm-up
    t = time.perf_counter()
    real = sample_oracle(oracle, N, T, generator=g)
    ours = time.perf_counter() - t
    rows = 20 if args.quick else 100
    t = time.perf_counter()
    naive_rows(oracle, rows, T, g)
    naive = (time.perf_counter() - t) / rows * N

    fake = torch.randint(0, 5000, (N, T), generator=g)
    rows = 256 if args.quick else N  # --quick: 8 batches, scaled to the whole epoch
    epoch = {name: cnn_epoch(real[:rows], fake[:rows], fused) * N / rows
             for name, fused in (("fused", True), ("per_tensor", False))}
    print(json.dumps({"naive_s": round(naive, 2), "ours_s": round(ours, 3), "speedup": round(naive / ours, 1),
                      "samples": N, "cnn_epoch_s": round(epoch["fused"], 2),
                      "cnn_epoch_per_tensor_adam_s": round(epoch["per_tensor"], 2),
                      "cnn_speedup": round(epoch["per_tensor"] / epoch["fused"], 2),
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
