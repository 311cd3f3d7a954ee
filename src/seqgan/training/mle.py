"""Generator MLE pretraining: teacher forcing and cross-entropy, read top to bottom.

AdamW, warmup + cosine decay, gradient clipping, optional label smoothing, token-budget batches
with length bucketing, validation loss/perplexity each epoch, best/last checkpoints, and exact
resume: the batch order of an epoch is a pure function of (seed, epoch), and the checkpoint holds
the position inside the epoch and every RNG state. Under torchrun each global batch is split
across ranks and the model is wrapped in DDP; the loss is normalized by the global token count,
so N processes compute the gradient one process computes for the same batch.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from seqgan import distributed
from seqgan.config import Config, to_dict
from seqgan.data.batching import collate, token_budget_batches
from seqgan.data.dataset import PairDataset
from seqgan.data.tokenizer import PAD_ID
from seqgan.models import build_generator
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
from seqgan.training.optim import (
    NonfiniteGuard,
    Stepper,
    load_optimizer_state,
    make_adamw,
    resume_schedule,
    warmup_cosine,
)
from seqgan.training.signals import Interrupted, StopFlag, signal_name

STAGE = "generator"


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def mle_loss(model: nn.Module, batch: dict, label_smoothing: float = 0.0,
             ignore_index: int = PAD_ID, reduction: str = "mean") -> tuple[torch.Tensor, int]:
    """Token cross-entropy of the response given the context (mean, or sum); returns (loss, tokens).

    `ignore_index=-100` counts every position (the oracle benchmark, where the pad id is a token).
    """
    logits = model(batch["src"], batch["src_mask"], batch["tgt_in"])  # (B, T, V)
    target = batch["tgt_out"]  # (B, T), pad where masked
    loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=ignore_index,
                           label_smoothing=label_smoothing, reduction=reduction)
    return loss, int((target != ignore_index).sum())


@torch.no_grad()
def validation_nll(model: nn.Module, data: PairDataset, batch_tokens: int, device: torch.device,
                   max_pairs: int | None = None) -> float:
    """Mean per-token NLL (nats) of the responses of `data` (all pairs, or the first max_pairs).

    In a distributed run each rank scores a share of the batches and the sums are all-reduced.
    """
    world = distributed.current()
    was_training = model.training
    model.eval()
    n = len(data) if max_pairs is None else min(len(data), max_pairs)
    total, tokens = 0.0, 0
    batches = token_budget_batches(data.lengths()[:n], batch_tokens, shuffle=False, seed=0)
    for idx in batches[world.rank :: world.size]:
        batch = to_device(collate(data, idx), device)
        logits = model(batch["src"], batch["src_mask"], batch["tgt_in"])
        target = batch["tgt_out"]
        total += float(F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=PAD_ID,
                                       reduction="sum"))
        tokens += int((target != PAD_ID).sum())
    model.train(was_training)
    total, tokens = world.sum(total, tokens)
    return total / tokens if tokens else math.nan  # no tokens: no estimate (not a perfect 0)


def budget_left(max_minutes: float | None, seconds_used: float) -> float:
    """Seconds left of a stage's time budget: `max_minutes` counts the stage's time over all its
    runs (a resumed stage goes on with what is left; a raised budget continues a stage that the
    old one stopped); None: no budget."""
    return math.inf if max_minutes is None else 60 * max_minutes - seconds_used


def stopped_by_budget(max_minutes: float | None, state: dict) -> bool:
    """A finished stage that its time budget stopped, and that budget (as now set) is spent."""
    return state.get("reason") == "time budget" and budget_left(max_minutes, state.get("seconds", 0.0)) <= 0


def generator_config(cfg: Config, vocab_size: int):
    return replace(cfg.model.generator, vocab_size=vocab_size)


def pretrain_generator(cfg: Config, run: RunDir, device: torch.device, tokenizer,
                       stop: StopFlag | None = None) -> dict:
    """Run (or resume) generator MLE pretraining in `run`; return a summary dict."""
    p = cfg.pretrain
    world = distributed.current()
    train = PairDataset.load(run.split_path("train"), tokenizer.vocab_size)
    valid = PairDataset.load(run.split_path("valid"), tokenizer.vocab_size)
    model = build_generator(generator_config(cfg, tokenizer.vocab_size)).to(device)
    optimizer = make_adamw(model, p.lr, p.weight_decay, tuple(p.betas))
    steps_per_epoch = len(token_budget_batches(train.lengths(), p.batch_tokens, shuffle=True, seed=cfg.runtime.seed))
    total_steps = p.epochs * steps_per_epoch
    if p.max_steps is not None:
        total_steps = min(total_steps, p.max_steps)
    scheduler = warmup_cosine(optimizer, p.warmup_steps, total_steps, p.min_lr_ratio)
    stepper = Stepper(optimizer, model, p.grad_clip, device, cfg.runtime.precision, world)

    state = {"step": 0, "epoch": 0, "batch": 0, "best_valid_nll": math.inf, "complete": False, "nonfinite": 0,
             "skipped": 0, "seconds": 0.0}  # seconds: the stage's time so far, across resumes
    batching = {"runtime.seed": cfg.runtime.seed, "pretrain.batch_tokens": p.batch_tokens}  # fixes an epoch's batches
    last_path, best_path = run.checkpoint(STAGE, "last"), run.checkpoint(STAGE, "best")
    if last_path.exists():
        ckpt = load_checkpoint(last_path, tokenizer_hash=tokenizer.hash)
        with restoring(last_path):
            load_model_state(model, ckpt["model"], last_path)
            load_optimizer_state(optimizer, ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            resume_schedule(scheduler)  # the command's pretrain.lr at the saved point of the schedule
            stepper.load_state_dict(ckpt.get("amp", {}))
            update_state(state, ckpt["state"])
            set_rng_state(ckpt["rng"])
        if state["complete"] and state["epoch"] < p.epochs and (p.max_steps is None or state["step"] < p.max_steps) \
                and not stopped_by_budget(p.max_minutes, state):
            state["complete"] = False  # the budget was raised: continue
        if state["complete"]:
            return _summary(state, model, run, resumed=True)
        if state["batch"] > 0:
            refuse_other_batching(state.get("batching", batching), batching, "epoch")
    state["batching"] = batching

    def save(path) -> None:
        guard.check_weights()  # a checkpoint holds weights a resume can use
        state.update(guard.counts(), seconds=round(seconds_before + time.monotonic() - started, 3))
        save_checkpoint(path, config=to_dict(cfg), tokenizer_hash=tokenizer.hash, model=model.state_dict(),
                        optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), state=dict(state),
                        amp=stepper.state_dict(), rng=rng_state(), model_config=to_dict(generator_config(cfg, tokenizer.vocab_size)))

    guard = NonfiniteGuard(cfg.runtime.max_nonfinite, "generator MLE", str(last_path), state["skipped"],
                           state["nonfinite"], model, "pretrain.lr")
    started, seconds_before = time.monotonic(), state.get("seconds", 0.0)
    last_save = started
    model.train()
    ddp = world.wrap(model)  # the model itself in a single process
    forward = torch.compile(ddp) if cfg.runtime.compile else ddp
    response_tokens = train.lengths()[:, 1]
    bar = tqdm(total=total_steps, initial=state["step"], desc="pretrain generator", unit="step",
               disable=not cfg.runtime.progress, dynamic_ncols=True, leave=False)
    window_tokens, window_start, stop_reason = 0, time.monotonic(), None
    while state["epoch"] < p.epochs and stop_reason is None:
        batches = token_budget_batches(train.lengths(), p.batch_tokens, shuffle=True,
                                       seed=cfg.runtime.seed * 1000 + state["epoch"])
        while state["batch"] < len(batches):
            rows = batches[state["batch"]]
            local, weight = world.share(rows)
            batch = to_device(collate(train, local), device)
            with stepper.autocast():
                loss_sum, ntok = mle_loss(forward, batch, p.label_smoothing, reduction="sum")
            # sum over this rank's tokens / all tokens of the global batch, x world size: DDP's
            # gradient average is then the gradient of the global batch's mean token loss
            global_tokens = int(response_tokens[rows].sum())
            loss = loss_sum * (weight * world.size / max(global_tokens, 1))
            optimizer.zero_grad(set_to_none=True)
            stepper.backward(loss)
            guard.record(stepper.step(loss))  # a non-finite loss or gradient: skipped and counted
            loss = loss.detach() / world.size  # this rank's share of the global batch's mean loss
            scheduler.step()
            state["step"] += 1
            state["batch"] += 1
            window_tokens += ntok + int(batch["src_mask"].sum())  # context + response tokens
            bar.update(1)
            if state["step"] % p.log_every == 0:
                elapsed = time.monotonic() - window_start
                shown, tps = world.sum(loss.item(), window_tokens / max(elapsed, 1e-9))
                bar.set_postfix(loss=f"{shown:.3f}", tok_s=f"{tps:,.0f}")
                run.log("pretrain_generator", step=state["step"], epoch=state["epoch"], loss=round(shown, 4),
                        lr=scheduler.get_last_lr()[0], tokens_per_s=round(tps, 1))
                window_tokens, window_start = 0, time.monotonic()
            # budget, signals and a checkpoint's time are decided together: every rank stops and
            # saves at the same step (a save gathers every rank's random state)
            now = time.monotonic()
            over_time = budget_left(p.max_minutes, seconds_before + now - started) <= 0
            over_time, signalled, save_due = world.any(over_time, stop is not None and stop.requested,
                                                       now - last_save >= 60 * cfg.runtime.checkpoint_minutes)
            if p.max_steps is not None and state["step"] >= p.max_steps:
                stop_reason = "max_steps"
            elif over_time:
                stop_reason = "time budget"
            if stop_reason:
                break
            if signalled:
                save(last_path)
                bar.close()
                raise Interrupted(signal_name(stop), str(last_path))
            if state["step"] % cfg.runtime.checkpoint_every == 0 or save_due:
                save(last_path)
                last_save = time.monotonic()
        if state["batch"] >= len(batches):
            state["epoch"] += 1
            state["batch"] = 0
        # validation at each epoch end, and once when a budget stops the stage mid-epoch
        guard.check_weights()
        nll = validation_nll(model, valid, p.batch_tokens * 2, device)
        improved = world.main_decides(nll < state["best_valid_nll"])
        if improved:
            state["best_valid_nll"] = nll
        run.log("pretrain_generator", step=state["step"], epoch=state["epoch"], valid_nll=round(nll, 4),
                valid_ppl=round(math.exp(min(nll, 50)), 3))
        if world.main:
            bar.write(f"epoch {state['epoch']}: valid nll {nll:.3f}, perplexity {math.exp(min(nll, 50)):.2f}"
                      + (" (best)" if improved else ""), file=sys.stderr)
        if state["epoch"] >= p.epochs or stop_reason:
            state["complete"] = True
            state["reason"] = stop_reason or "epochs"
        if improved:
            save(best_path)
        save(last_path)
        last_save = time.monotonic()
    bar.close()
    return _summary(state, model, run, resumed=False)


def _summary(state: dict, model: nn.Module, run: RunDir, resumed: bool) -> dict:
    best = state["best_valid_nll"]
    return {
        "stage": "pretrain_generator",
        "step": state["step"],
        "epoch": state["epoch"],
        "best_valid_nll": round(best, 4),
        "best_valid_ppl": round(math.exp(min(best, 50)), 3),
        "parameters": sum(p.numel() for p in model.parameters()),
        "complete": state["complete"],
        "skipped_steps": state.get("skipped", 0),
        "stopped_by": state.get("reason"),
        "already_complete": resumed,
        "checkpoint": str(run.checkpoint(STAGE, "best")),
    }
