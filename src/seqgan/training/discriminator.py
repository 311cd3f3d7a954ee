"""Discriminator training: real pairs against fresh generator samples (and mismatched pairs).

SeqGAN pretrains D for rounds of (new negatives from the current G, k epochs). A share of the
negatives can be real responses paired with a context from another dialogue, so that D judges
relevance as well as fluency. Batches are balanced (as many real as negative examples).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from seqgan import distributed
from seqgan.config import (
    Config,
    DiscriminatorTrainConfig,
    RuntimeConfig,
    check_discriminator_reads_context,
    to_dict,
)
from seqgan.data.dataset import PairDataset
from seqgan.metrics.classifier import roc_auc
from seqgan.models import build_discriminator, copy_token_embeddings
from seqgan.rundir import RunDir
from seqgan.training.checkpoint import (
    load_checkpoint,
    load_model_state,
    refuse_other_batching,
    restoring,
    rng_state,
    save_checkpoint,
    set_rng_state,
    update_state,
)
from seqgan.training.generate import contexts_of, generate_responses, pad_batch
from seqgan.training.optim import (
    NonfiniteGuard,
    Stepper,
    load_optimizer_state,
    make_adamw,
)
from seqgan.training.signals import Interrupted, StopFlag, signal_name

STAGE = "discriminator"


@dataclass
class DExamples:
    """Examples for D: contexts, responses (id arrays) and labels (1 real, 0 negative)."""

    contexts: list[np.ndarray]
    responses: list[np.ndarray]
    labels: np.ndarray  # (N,) float32

    def __len__(self) -> int:
        return len(self.labels)


def mismatched_indices(data: PairDataset, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each pair in idx, the index of a pair from a different dialogue whose response is not
    the pair's own response (a stock reply such as "thank you ." recurs across dialogues): the
    mismatched negative. After 100 draws a pair that finds none keeps its last draw."""
    dialogue = data.dialogue_ids()
    if len(np.unique(dialogue)) < 2:
        raise ValueError("mismatched negatives need at least two dialogues")
    out = rng.integers(0, len(data), size=len(idx))

    def bad_draws() -> np.ndarray:
        same = dialogue[out] == dialogue[idx]
        return same | np.array([not s and np.array_equal(data.response(int(o)), data.response(int(i)))
                                for s, o, i in zip(same, out, idx, strict=True)], dtype=bool)

    bad = bad_draws()
    for _ in range(100):  # resample the few that landed in their own dialogue or on the same reply
        if not bad.any():
            break
        out[bad] = rng.integers(0, len(data), size=int(bad.sum()))
        bad = bad_draws()
    return out


def build_examples(data: PairDataset, idx: np.ndarray, fakes: list[np.ndarray], mismatch_share: float,
                   rng: np.random.Generator, max_len: int) -> DExamples:
    """Real pairs idx (label 1) and one negative per pair (label 0): generated, or mismatched.

    A split of one dialogue (a tiny corpus's valid split) has no reply from another dialogue:
    its negatives are all generated. Every response is cut to its first `max_len` tokens, where the sampler of `fakes` stops: a
    real response longer than any sample (or its eos past that point) would give D the label by
    its length alone, a cue the generator cannot answer.
    """
    contexts = contexts_of(data, idx)
    real = [data.response(int(i))[:max_len] for i in idx]
    negatives = list(fakes)
    if mismatch_share > 0 and len(np.unique(data.dialogue_ids())) > 1:  # one dialogue has no other's reply
        use = rng.random(len(idx)) < mismatch_share
        if use.any():
            other = mismatched_indices(data, idx[use], rng)
            for k, j in zip(np.nonzero(use)[0], other, strict=True):
                negatives[k] = data.response(int(j))[:max_len]
    labels = np.concatenate([np.ones(len(idx)), np.zeros(len(idx))]).astype(np.float32)
    return DExamples(contexts + contexts, real + negatives, labels)


def d_logits(disc: nn.Module, contexts: list[np.ndarray], responses: list[np.ndarray],
             device: torch.device, min_len: int = 1) -> torch.Tensor:
    src, src_mask = pad_batch(contexts)
    resp, resp_mask = pad_batch(responses, min_len=min_len)
    return disc(src.to(device), src_mask.to(device), resp.to(device), resp_mask.to(device))  # (B,)


def balanced_batches(labels: np.ndarray, batch_size: int, rng: np.random.Generator,
                     lengths: np.ndarray | None = None, window: int = 32) -> list[np.ndarray]:
    """Shuffle positives and negatives separately and interleave them half and half per batch.

    With `lengths` (a padded length per example), each run of `window` batches' worth of
    positives, and of negatives, is ordered by length before it is cut into batches, so a batch
    holds examples of similar length and pads little; the batches are shuffled as before. The
    draws from `rng` are the same with or without it, and equal lengths leave the order as it was.
    """
    pos = rng.permutation(np.nonzero(labels > 0.5)[0])
    neg = rng.permutation(np.nonzero(labels <= 0.5)[0])
    half = max(1, batch_size // 2)
    n = min(len(pos), len(neg))
    if lengths is not None:
        span = half * window
        for side in (pos, neg):
            for i in range(0, n, span):
                chunk = side[i : min(i + span, n)]
                side[i : i + len(chunk)] = chunk[np.argsort(lengths[chunk], kind="stable")]
    batches = [np.concatenate([pos[i : min(i + half, n)], neg[i : min(i + half, n)]]) for i in range(0, n, half)]
    rest = np.concatenate([pos[n:], neg[n:]])
    batches += [rest[i : i + batch_size] for i in range(0, len(rest), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def padded_lengths(ex: DExamples) -> np.ndarray:
    """The length an example pads a batch to: the longer of its context and its response."""
    return np.array([max(len(c), len(r)) for c, r in zip(ex.contexts, ex.responses, strict=True)])


class RoundPosition:
    """Where a discriminator round resumes (epoch, batch) with its running totals, and how it
    saves mid-round: `save(epoch, batch, totals)` writes the stage's checkpoint and returns its
    description; `due()` says when (every `runtime.checkpoint_every` steps or
    `runtime.checkpoint_minutes`)."""

    def __init__(self, start: tuple[int, int], totals: tuple[float, int, int], save, every_steps: int,
                 every_minutes: float):
        self.start, self.totals, self._save = start, totals, save
        self.every_steps, self.every_seconds = every_steps, 60 * every_minutes
        self.steps, self.last = 0, time.monotonic()

    def due(self) -> bool:
        """Whether to save after this step; every rank takes the decision alike (a save gathers
        every rank's random state)."""
        self.steps += 1
        late = distributed.current().any(time.monotonic() - self.last >= self.every_seconds)[0]
        return self.steps % self.every_steps == 0 or late

    def save(self, epoch: int, batch: int, totals: tuple[float, int, int]) -> str:
        self.last = time.monotonic()
        return self._save(epoch, batch, totals)


def train_epochs(disc: nn.Module, optimizer: torch.optim.Optimizer, ex: DExamples, epochs: int,
                 dc: DiscriminatorTrainConfig, device: torch.device, rng: np.random.Generator,
                 min_len: int = 1, extra_loss=None, bar: tqdm | None = None, stop: StopFlag | None = None,
                 checkpoint: str = "", ddp: nn.Module | None = None, precision: str = "fp32",
                 guard: NonfiniteGuard | None = None, stepper: Stepper | None = None,
                 position: RoundPosition | None = None) -> dict:
    """k epochs of BCE-with-logits over balanced batches; returns mean loss, accuracy and the
    number of steps skipped in this call.

    `stepper`: a stage that calls this repeatedly passes one Stepper for `disc` to every call, so
    that fp16's loss scale carries over (a fresh one starts at 2^16 and skips steps to find it).

    A step with a non-finite loss or gradient is skipped and counted by `guard` (by default a fresh
    one with `runtime.max_nonfinite`'s default limit), which raises FloatingPointError at its limit
    in a row; the last checkpoint on disk stays the last good one. A stage that calls this
    repeatedly passes one guard to every call, so the count in a row spans the calls.
    `ddp`: `disc` wrapped by `World.wrap` (once per stage); each rank then takes a share of every
    batch. Without it every rank trains on whole batches (alike on every rank: a rank's share
    would train its own copy apart from the others'). `extra_loss` gets the plain module.
    `position`: where a resumed call starts (the batches before it are drawn from `rng` and
    passed over) and how it saves mid-way: when `position.due()` after a step, and on a signal
    before raising Interrupted.
    """
    world = distributed.current() if ddp is not None else distributed.SINGLE
    model = ddp if ddp is not None else disc
    model.train()
    stepper = stepper or Stepper(optimizer, disc, dc.grad_clip, device, precision, world)
    guard = guard or NonfiniteGuard(RuntimeConfig.max_nonfinite, "discriminator", checkpoint)
    skipped_before = guard.skipped
    total_loss, correct, seen = position.totals if position is not None else (0.0, 0, 0)
    first = position.start if position is not None else (0, 0)
    lengths = padded_lengths(ex)
    for epoch in range(epochs):
        batches = balanced_batches(ex.labels, dc.batch_size, rng, lengths)  # drawn even when passed over
        for b, idx in enumerate(batches):
            if (epoch, b) < first:
                continue
            if world.any(stop is not None and stop.requested)[0]:
                # saved here when the caller can resume mid-way; else from its last checkpoint
                saved = position.save(epoch, b, (total_loss, correct, seen)) if position is not None else checkpoint
                raise Interrupted(signal_name(stop), saved or None)
            local, weight = world.share(idx)
            y = torch.as_tensor(ex.labels[local], device=device)
            with stepper.autocast():
                logits = d_logits(model, [ex.contexts[i] for i in local], [ex.responses[i] for i in local], device,
                                  min_len).float()
            target = y * (1 - dc.label_smoothing) + 0.5 * dc.label_smoothing
            # this rank's share of the global batch mean (DDP averages the gradients over ranks)
            bce = F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
            loss = bce * (weight * world.size / len(idx))
            if extra_loss is not None:
                loss = loss + extra_loss(disc)
            optimizer.zero_grad(set_to_none=True)
            stepper.backward(loss)
            if guard.record(stepper.step(loss)) and weight:
                total_loss += bce.item()
                correct += int(((logits > 0).float() == y).sum())
                seen += len(local)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total_loss / max(seen, 1):.3f}", acc=f"{correct / max(seen, 1):.3f}")
            if position is not None and position.due():
                position.save(epoch, b + 1, (total_loss, correct, seen))
    total_loss, correct, seen = world.sum(total_loss, correct, seen)
    return {"loss": total_loss / max(seen, 1), "accuracy": correct / max(seen, 1),
            "skipped_steps": guard.skipped - skipped_before}


@torch.no_grad()
def evaluate(disc: nn.Module, ex: DExamples, device: torch.device, batch_size: int = 256, min_len: int = 1) -> dict:
    """Validation loss, accuracy, ROC-AUC and the fooling rate (share of negatives judged real)."""
    was_training = disc.training
    disc.eval()
    logits = []
    for s in range(0, len(ex), batch_size):
        logits.append(d_logits(disc, ex.contexts[s : s + batch_size], ex.responses[s : s + batch_size],
                               device, min_len).float().cpu())
    disc.train(was_training)
    z = torch.cat(logits)
    y = torch.as_tensor(ex.labels)
    return {
        "loss": float(F.binary_cross_entropy_with_logits(z, y)),
        "accuracy": float(((z > 0).float() == y).float().mean()),
        "auc": float(roc_auc(z.numpy(), ex.labels)),
        "fooling_rate": float((z[y < 0.5] > 0).float().mean()) if (y < 0.5).any() else math.nan,
    }


def discriminator_config(cfg: Config, vocab_size: int):
    return replace(cfg.model.discriminator, vocab_size=vocab_size)


def pretrain_discriminator(cfg: Config, run: RunDir, device: torch.device, tokenizer, gen: nn.Module,
                           stop: StopFlag | None = None) -> dict:
    """Rounds of (fresh negatives from `gen`, k epochs); resumes where it was saved, inside a round
    too (its negatives are drawn again from the same random state, then its batches go on)."""
    dc = cfg.discriminator
    check_discriminator_reads_context(cfg)
    train = PairDataset.load(run.split_path("train"), tokenizer.vocab_size)
    valid = PairDataset.load(run.split_path("valid"), tokenizer.vocab_size)
    disc = build_discriminator(discriminator_config(cfg, tokenizer.vocab_size)).to(device)
    if dc.init_embeddings:  # a resumed run loads its own below
        copy_token_embeddings(gen, disc)
    optimizer = make_adamw(disc, dc.lr, dc.weight_decay)
    stepper = Stepper(optimizer, disc, dc.grad_clip, device, cfg.runtime.precision, distributed.current())
    state = {"round": 0, "best_auc": -1.0, "complete": False, "nonfinite": 0, "skipped": 0}
    g = torch.Generator(device="cpu").manual_seed(cfg.runtime.seed + 17)
    last_path, best_path = run.checkpoint(STAGE, "last"), run.checkpoint(STAGE, "best")
    if last_path.exists():
        ckpt = load_checkpoint(last_path, tokenizer_hash=tokenizer.hash)
        with restoring(last_path):
            load_model_state(disc, ckpt["model"], last_path)
            load_optimizer_state(optimizer, ckpt["optimizer"])
            stepper.load_state_dict(ckpt.get("amp", {}))
            update_state(state, ckpt["state"])
            set_rng_state(ckpt["rng"], g)
        if state["round"] < dc.rounds:
            state["complete"] = False
        elif state.pop("in_round", None) is not None:  # rounds lowered to where a round was stopped
            state["complete"] = True
        if state["complete"]:
            return {"stage": "pretrain_discriminator", **state, "already_complete": True}
    # what fixes a round's negatives and batches: a round resumed inside must be cut as it was
    batching = {"runtime.seed": cfg.runtime.seed, "discriminator.batch_size": dc.batch_size,
                "discriminator.pairs_per_round": dc.pairs_per_round, "discriminator.mismatch_share": dc.mismatch_share,
                **{f"sample.{k}": v for k, v in to_dict(cfg.sample).items() if k != "batch_size"}}
    if state.get("in_round") is not None:
        refuse_other_batching(state["in_round"].get("batching", batching), batching, "discriminator round")

    def save(path) -> None:
        guard.check_weights()  # a checkpoint holds weights a resume can use
        state.update(guard.counts())
        save_checkpoint(path, config=to_dict(cfg), tokenizer_hash=tokenizer.hash, model=disc.state_dict(),
                        optimizer=optimizer.state_dict(), state=dict(state), rng=rng_state(g),
                        amp=stepper.state_dict(), model_config=to_dict(discriminator_config(cfg, tokenizer.vocab_size)))

    # A fixed validation set: valid pairs against negatives from the generator as it is now.
    vrng = np.random.default_rng(cfg.runtime.seed + 1)
    vidx = vrng.permutation(len(valid))[: min(len(valid), 2000)]
    vfake = generate_responses(gen, contexts_of(valid, vidx), cfg.sample, device,
                               torch.Generator().manual_seed(cfg.runtime.seed + 2))
    vex = build_examples(valid, vidx, vfake, dc.mismatch_share, vrng, cfg.sample.max_len)

    result = {}
    ddp = distributed.current().wrap(disc)
    guard = NonfiniteGuard(cfg.runtime.max_nonfinite, "discriminator", str(last_path), state["skipped"],
                           state["nonfinite"], disc, "discriminator.lr")
    while state["round"] < dc.rounds:
        started = time.monotonic()
        inside = state.get("in_round")  # saved mid-round: where it stood, and the sampler's state at its start
        if inside is not None:
            g.set_state(torch.tensor(inside["g"], dtype=torch.uint8))
        round_g = g.get_state()
        rng = np.random.default_rng([cfg.runtime.seed, state["round"]])
        n = len(train) if dc.pairs_per_round is None else min(len(train), dc.pairs_per_round)
        idx = rng.permutation(len(train))[:n]
        fakes = generate_responses(gen, contexts_of(train, idx), cfg.sample, device, g,
                                   progress=cfg.runtime.progress, desc=f"negatives round {state['round'] + 1}")
        ex = build_examples(train, idx, fakes, dc.mismatch_share, rng, cfg.sample.max_len)
        per_epoch = math.ceil(len(ex) / dc.batch_size)
        start = (inside["epoch"], inside["batch"]) if inside is not None else (0, 0)
        bar = tqdm(total=dc.epochs_per_round * per_epoch, initial=start[0] * per_epoch + start[1],
                   desc=f"discriminator round {state['round'] + 1}/{dc.rounds}", unit="step",
                   disable=not cfg.runtime.progress, leave=False, dynamic_ncols=True)

        def save_inside(epoch: int, batch: int, totals: tuple[float, int, int], round_g=round_g) -> str:
            loss, correct, seen = distributed.current().sum(*totals)  # the round's totals over all ranks
            state["in_round"] = {"g": round_g.tolist(), "epoch": epoch, "batch": batch,
                                 "totals": [loss, int(correct), int(seen)], "batching": batching}
            save(last_path)
            guard.checkpoint = f"{last_path} (round {state['round'] + 1}, epoch {epoch + 1}, batch {batch})"
            return guard.checkpoint

        # the saved running totals are all ranks' together: rank 0 resumes with them, the others at 0
        # (their sum at the round's end is then the same with any number of processes)
        totals = tuple(inside["totals"]) if inside is not None and distributed.current().main else (0.0, 0, 0)
        position = RoundPosition(start, totals, save_inside,
                                 cfg.runtime.checkpoint_every, cfg.runtime.checkpoint_minutes)
        if inside is None:  # too many non-finite steps: the last good checkpoint
            guard.checkpoint = f"{last_path} (round {state['round']})" if last_path.exists() else ""
        fit = train_epochs(disc, optimizer, ex, dc.epochs_per_round, dc, device, rng, bar=bar, stop=stop,
                           checkpoint=guard.checkpoint, ddp=ddp, precision=cfg.runtime.precision, guard=guard,
                           stepper=stepper, position=position)
        bar.close()
        guard.check_weights()
        result = evaluate(disc, vex, device)
        state.pop("in_round", None)
        state["round"] += 1
        improved = distributed.current().main_decides(result["auc"] > state["best_auc"])
        if improved:
            state["best_auc"] = result["auc"]
        run.log("pretrain_discriminator", round=state["round"], train_loss=round(fit["loss"], 4),
                train_accuracy=round(fit["accuracy"], 4), valid_loss=round(result["loss"], 4),
                valid_accuracy=round(result["accuracy"], 4), valid_auc=round(result["auc"], 4),
                seconds=round(time.monotonic() - started, 1))
        if distributed.current().main:
            tqdm.write(f"discriminator round {state['round']}/{dc.rounds}: valid accuracy {result['accuracy']:.3f}, "
                       f"AUC {result['auc']:.3f}" + (" (best)" if improved else ""), file=sys.stderr)
        state["complete"] = state["round"] >= dc.rounds
        if improved:
            save(best_path)
        save(last_path)
    return {"stage": "pretrain_discriminator", **{k: v for k, v in state.items() if k != "in_round"}, "valid": result,
            "already_complete": False}
