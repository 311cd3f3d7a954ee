"""Monte-Carlo rollout rewards: batched and cached (ours) vs the reference implementations' way.

Same weights (a chitchat-cpu-sized generator as the rollout policy and discriminator), same
sampled sequences: (a) naive: a loop over prefix positions and rollouts, every token re-running
the decoder over the whole prefix without a cache; (b) ours: all rows x rollouts of a prefix
together, the prefix fed once into the key/value cache.

    python benchmarks/rollout.py [--quick]

Prints one JSON object: naive_s, batched_s, speedup (and the workload).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

from seqgan.config import load_config
from seqgan.models import build_discriminator, build_generator
from seqgan.models.sampling import sample
from seqgan.training.rollout import discriminator_reward, naive_rollout_rewards, rollout_rewards


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    cfg = load_config("chitchat-cpu")
    V = cfg.tokenizer.vocab_size
    torch.manual_seed(0)
    gen = build_generator(replace(cfg.model.generator, vocab_size=V)).eval()
    disc = build_discriminator(replace(cfg.model.discriminator, vocab_size=V)).eval()
    B, N, T = (8, 4, 12) if args.quick else (cfg.adversarial.batch_size, cfg.adversarial.rollouts, 20)
    src = torch.randint(4, V, (B, 15))
    mask = torch.ones_like(src, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    seqs = sample(gen, src, mask, max_len=T, eos_id=None, generator=g)
    reward = discriminator_reward(disc)
    kw = dict(max_len=T, bos_id=2, eos_id=3, pad_id=1)
    for fn in (rollout_rewards, naive_rollout_rewards):  # warm-up, untimed: both sides start warm
        fn(gen, reward, src[:2], mask[:2], seqs[:2], N, generator=torch.Generator().manual_seed(1), **kw)
    t = time.perf_counter()
    rollout_rewards(gen, reward, src, mask, seqs, N, generator=g, **kw)
    batched = time.perf_counter() - t
    t = time.perf_counter()
    naive_rollout_rewards(gen, reward, src, mask, seqs, N, generator=g, **kw)
    naive = time.perf_counter() - t
    print(json.dumps({"naive_s": round(naive, 3), "batched_s": round(batched, 3), "speedup": round(naive / batched, 1),
                      "batch": B, "rollouts": N, "length": T, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
