"""The oracle experiment's four phases, each timed through the experiment's own functions at the
`oracle-paper` sizes, against an arithmetic floor: the phase's matmul FLOPs (counted from the
models' shapes) divided by this machine's fp32 matmul rate, measured in the same process.

    mle_epoch   one MLE epoch: 9,984 sequences x 20 tokens, batch 64, forward + backward + Adam
    sample      9,984 generator samples (the negatives of one D step)
    d_epoch     one CNN-discriminator epoch: 9,984 real + 9,984 generated, batch 64
    g_step      one adversarial generator step: 64 samples, 16 rollouts of every prefix, D's
                scores of the 19,520 completed sequences, one policy-gradient update

    python benchmarks/oracle_phases.py [--repeats 3] [--precisions fp32,bf16] [--phases mle_epoch,d_epoch]

Prints one JSON object: the matmul rate (GFLOP/s) and per phase its median seconds, FLOPs,
floor seconds and the ratio seconds / floor. Each precision (`runtime.precision`: the training
forwards under autocast; sampling stays fp32) times the same phases from the same starting
models, side by side; a phase under bf16 is keyed `NAME_bf16` and its floor stays the fp32 one.
`cpu_capability` names the vector instructions PyTorch uses here (bf16 is fast only on AVX-512
CPUs; on AVX2 it is emulated).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time

import numpy as np
import torch

from seqgan.config import load_config
from seqgan.oracle.experiment import (
    discriminator_epochs,
    discriminator_for,
    generator_for,
    generator_step,
    mle_epoch,
    sample_generator,
)
from seqgan.oracle.oracle import make_oracle, sample_oracle
from seqgan.training.optim import adam
from seqgan.training.rollout import discriminator_reward


def matmul_gflops(repeats: int = 20) -> float:
    """fp32 rate of a (1024 x 1720) @ (1720 x 3440) product, the size of the CNN's highway layer."""
    a, b = torch.randn(1024, 1720), torch.randn(1720, 3440)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * 1024 * 1720 * 3440 / statistics.median(times) / 1e9


def lstm_token_macs(gen) -> int:
    c = gen.config
    return 4 * c.hidden_dim * (c.embed_dim + c.hidden_dim) + c.hidden_dim * c.vocab_size


def cnn_sequence_macs(disc, T: int) -> int:
    c = disc.config
    conv = sum((T - k + 1) * k * c.embed_dim * n for k, n in zip(c.filter_sizes, c.num_filters, strict=True))
    total = sum(c.num_filters)
    return conv + total * 2 * total + total


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


PHASES = ("mle_epoch", "sample", "d_epoch", "g_step")


def time_phases(cfg, gen0, disc0, real, fake, g, precision: str, flops: dict, rate: float, repeats: int,
                phases: tuple[str, ...] = PHASES) -> dict:
    """Each phase's median seconds under `precision`, from copies of the same starting models."""
    o, device = cfg.oracle, torch.device("cpu")
    gen, disc = copy.deepcopy(gen0), copy.deepcopy(disc0)
    g_opt, adv_opt = adam(gen.parameters(), o.gen_lr), adam(gen.parameters(), o.gen_lr)
    d_opt = adam(disc.parameters(), o.d_lr)
    rollout, reward = copy.deepcopy(gen), discriminator_reward(disc)
    rng = np.random.default_rng(0)
    steps = {
        "mle_epoch": lambda: mle_epoch(gen, g_opt, real, o.batch_size, o.grad_clip, rng, device, precision),
        "sample": lambda: sample_generator(gen, o.num_samples, o.seq_len, o.num_samples, g),
        "d_epoch": lambda: discriminator_epochs(disc, d_opt, real, fake, 1, o, rng, device, precision=precision),
        "g_step": lambda: (disc.eval(), generator_step(gen, rollout, reward, adv_opt, o.batch_size, o.seq_len,
                                                       o.rollouts, o.grad_clip, cfg.adversarial.rollout_chunk, g,
                                                       device, precision, o.pg_loss)),  # D scores as in a round
    }
    result = {}
    for name, fn in steps.items():
        if name not in phases or (name == "sample" and precision != "fp32"):
            continue  # sampling has no precision setting
        fn()  # warm-up
        s = timed(fn, repeats)
        floor = flops[name] / (rate * 1e9)
        key = name if precision == "fp32" else f"{name}_{precision}"
        result[key] = {"s": round(s, 3), "gflop": round(flops[name] / 1e9, 1), "floor_s": round(floor, 3),
                       "ratio": round(s / floor, 2)}
        print(f"{key}: {s:.2f} s (floor {floor:.2f} s)", file=sys.stderr, flush=True)
    if "d_epoch" not in phases:
        return result
    # the training accuracy of one more D epoch after the timed ones
    fit = discriminator_epochs(disc, d_opt, real, fake, 1, o, rng, device, precision=precision)
    result[f"d_accuracy_{precision}"] = round(fit["accuracy"], 4)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16, fp16")
    ap.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset of " + ", ".join(PHASES))
    args = ap.parse_args()
    phases = tuple(args.phases.split(","))
    if not set(phases) <= set(PHASES):
        ap.error(f"--phases: choose from {', '.join(PHASES)}")
    cfg = load_config("oracle-paper")
    o = cfg.oracle
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    oracle = make_oracle(o.vocab_size, o.embed_dim, o.hidden_dim, seed=0).eval()
    real = sample_oracle(oracle, o.num_samples, o.seq_len, start_token=0, generator=g)
    gen0, disc0 = generator_for(cfg), discriminator_for(cfg)
    rate = matmul_gflops()

    tokens = o.num_samples * o.seq_len
    lstm, cnn = lstm_token_macs(gen0), cnn_sequence_macs(disc0, o.seq_len)
    # rollouts: prefix t of each of the 64 rows gets 16 completions of T - t tokens; D scores
    # every completion and the 64 sampled rows; the update is one forward + backward on 64 rows
    rollout_tokens = o.batch_size * o.rollouts * sum(o.seq_len - t for t in range(1, o.seq_len))
    scored = o.batch_size * o.rollouts * (o.seq_len - 1) + o.batch_size
    flops = {
        "mle_epoch": 2 * 3 * lstm * tokens,
        "sample": 2 * lstm * tokens,
        "d_epoch": 2 * 3 * cnn * 2 * o.num_samples,
        "g_step": 2 * (lstm * (rollout_tokens + o.batch_size * o.seq_len * 4) + cnn * scored),
    }
    fake = sample_generator(gen0, o.num_samples, o.seq_len, o.num_samples, g)
    result = {"matmul_gflops": round(rate, 1), "threads": torch.get_num_threads(),
              "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    for precision in args.precisions.split(","):
        result.update(time_phases(cfg, gen0, disc0, real, fake, g, precision, flops, rate, args.repeats, phases))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
