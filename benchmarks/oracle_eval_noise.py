"""How much of an NLL-oracle figure is the noise of its own samples.

Each evaluation of the oracle experiment draws 9,984 fresh sequences from the generator and
scores them under the oracle, so two evaluations of one and the same generator differ. This
script takes the generator of an oracle run's checkpoint and evaluates it `--draws` times with
independent sampling seeds, as the experiment does (fp32, 9,984 x 20 tokens):

- the spread of the draws (their standard deviation) and their range;
- the standard error that one draw predicts for itself (per-sequence mean NLLs: std / sqrt(N));
- from these, the +-1.96 standard-error margin of one figure and of a difference of two.

    python benchmarks/oracle_eval_noise.py --run-dir RUN [--draws 8] [--checkpoint last|best|PATH]

Prints one JSON object. The oracle is the one the run was made with (`oracle.params` in its
config.yaml, else the N(0,1) oracle from its seed).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from seqgan.config import from_dict
from seqgan.oracle.experiment import generator_for, sample_generator
from seqgan.oracle.oracle import load_oracle, make_oracle
from seqgan.rundir import RunDir
from seqgan.training.checkpoint import load_checkpoint, load_model_state
from seqgan.training.policy import shift_right


@torch.no_grad()
def sequence_nll(oracle: torch.nn.Module, samples: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Each sequence's mean per-token NLL (nats) under `oracle`: (N,). Their mean is nll_oracle's figure."""
    out = []
    for s in range(0, len(samples), batch_size):
        x = samples[s : s + batch_size]
        logits = oracle(None, None, shift_right(x, 0))  # (B, T, V)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), x.flatten(), reduction="none")
        out.append(nll.view(x.shape).mean(1))
    return torch.cat(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True, help="an oracle experiment's run directory")
    ap.add_argument("--checkpoint", default="last", help="last | best | a checkpoint path (default last)")
    ap.add_argument("--draws", type=int, default=8, help="independent evaluations (default 8)")
    ap.add_argument("--seed", type=int, default=12345, help="first sampling seed; draw k uses seed + k")
    args = ap.parse_args()

    run = RunDir(args.run_dir)
    stored = run.read_config()
    if stored is None:
        raise SystemExit(f"{run.root} has no config.yaml")
    cfg = from_dict(stored)
    o = cfg.oracle
    path = Path(args.checkpoint) if args.checkpoint not in ("last", "best") else run.checkpoint("oracle", args.checkpoint)
    ckpt = load_checkpoint(path)
    torch.set_num_threads(cfg.runtime.threads or torch.get_num_threads())
    oracle = (load_oracle(o.params) if o.params else make_oracle(o.vocab_size, o.embed_dim, o.hidden_dim,
                                                                 cfg.runtime.seed)).eval()
    gen = generator_for(cfg)
    load_model_state(gen, ckpt["model"], path)
    state = ckpt["state"]

    means, within = [], []
    t0 = time.perf_counter()
    for k in range(args.draws):
        samples = sample_generator(gen, o.num_samples, o.seq_len, o.num_samples,
                                   torch.Generator().manual_seed(args.seed + k))
        per_seq = sequence_nll(oracle, samples)
        means.append(float(per_seq.mean()))
        within.append(float(per_seq.std()) / math.sqrt(len(per_seq)))
    seconds = time.perf_counter() - t0
    mean = sum(means) / len(means)
    spread = math.sqrt(sum((m - mean) ** 2 for m in means) / (len(means) - 1)) if len(means) > 1 else math.nan
    se = sum(within) / len(within)
    curve = [c for c in state.get("curve", []) if c.get("phase") == "adversarial"]
    print(json.dumps({
        "checkpoint": str(path), "mle_epochs": state.get("epoch"), "adversarial_rounds": state.get("adv_round"),
        "last_curve_point": curve[-1] if curve else None,
        "samples_per_draw": o.num_samples, "draws": len(means), "nll_oracle_draws": [round(m, 4) for m in means],
        "mean": round(mean, 4), "min": round(min(means), 4), "max": round(max(means), 4),
        "std_between_draws": round(spread, 4), "standard_error_within_a_draw": round(se, 4),
        "margin_95_one_figure": round(1.96 * se, 4), "margin_95_difference_of_two": round(1.96 * se * math.sqrt(2), 4),
        "seconds": round(seconds, 1), "threads": torch.get_num_threads(),
    }, indent=2))


if __name__ == "__main__":
    main()
