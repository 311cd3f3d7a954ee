"""Oracle benchmark speed: sampling 9,984 x 20 tokens from the oracle (vocab 5000), and one
epoch of the paper's CNN discriminator (10k real + 10k generated, batch 64, fwd + bwd + Adam).

(a) naive sampling: a per-row loop with torch.multinomial at every step (timed on a few rows
    and extrapolated); (b) ours: all rows in large batches, inverse-CDF sampling.

    python benchmarks/oracle_sampling.py [--quick]

Prints one JSON object: naive_s, ours_s, speedup, samples, cnn_epoch_s.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from seqgan.models.cnn import CNNDiscriminator
from seqgan.models.discriminator import DiscriminatorConfig
from seqgan.oracle.oracle import make_oracle, sample_oracle


@torch.no_grad()
def naive_rows(oracle, rows: int, T: int, g: torch.Generator) -> None:
    for _ in range(rows):
        st = oracle.start(None, None, batch_size=1)
        tok = torch.zeros(1, 1, dtype=torch.long)
        for _ in range(T):
            probs = torch.softmax(oracle.step(st, tok)[:, -1], -1)
            tok = torch.multinomial(probs, 1, generator=g)


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

    torch.manual_seed(0)
    d = CNNDiscriminator(DiscriminatorConfig(arch="cnn", conditional=False, vocab_size=5000, embed_dim=64, max_len=T,
                                             dropout=0.25)).train()
    opt = torch.optim.Adam(d.parameters(), lr=1e-4)
    x = torch.cat([real[:10000], torch.randint(0, 5000, (N, T))])
    y = torch.cat([torch.ones(N), torch.zeros(N)])
    mask = torch.ones(64, T, dtype=torch.bool)
    batches = len(x) // 64
    timed = 40 if args.quick else batches
    perm = torch.randperm(len(x))
    t = time.perf_counter()
    for b in range(timed):
        idx = perm[b * 64 : (b + 1) * 64]
        loss = F.binary_cross_entropy_with_logits(d(None, None, x[idx], mask), y[idx]) + 0.2 * d.l2_penalty()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    epoch = (time.perf_counter() - t) / timed * batches
    print(json.dumps({"naive_s": round(naive, 2), "ours_s": round(ours, 3), "speedup": round(naive / ours, 1),
                      "samples": N, "cnn_epoch_s": round(epoch, 2), "cnn_batches_timed": timed,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
