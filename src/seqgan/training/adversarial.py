"""Adversarial training, read top to bottom: g-steps (SeqGAN policy gradient or the penalty
objective), then d-steps on fresh negatives, validation, checkpoints, exact resume.

`objective: seqgan` (the paper): Y ~ G; Q_t from Monte-Carlo rollouts of a rollout policy that
trails G; loss = -sum_t log G(y_t|..) (Q_t - b). `objective: penalty` (the original project's
idea, made to work): CE(real pair) + lambda E_{y~G}[-log D(x, y)], its gradient by REINFORCE or
by straight-through Gumbel-softmax samples fed to D as distributions. G runs without dropout in
the g-steps so that the log-probabilities are those of the policy that sampled.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from seqgan import distributed
from seqgan.config import Config, SampleConfig, to_dict
from seqgan.data.batching import collate
from seqgan.data.dataset import PairDataset
from seqgan.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from seqgan.errors import ConfigError
from seqgan.metrics.diversity import distinct_n
from seqgan.models.noise import RowNoise
from seqgan.models.sampling import sample, special_ids
from seqgan.rundir import RunDir
from seqgan.training import discriminator as dtrain
from seqgan.training.checkpoint import (
    load_checkpoint,
    load_model_state,
    restoring,
    rng_state,
    save_checkpoint,
    set_rng_state,
    update_state,
)
from seqgan.training.generate import content_tokens, contexts_of, generate_responses
from seqgan.training.mle import (
    budget_left,
    generator_config,
    mle_loss,
    stopped_by_budget,
    to_device,
    validation_nll,
)
from seqgan.training.optim import (
    NonfiniteGuard,
    Stepper,
    adam,
    load_optimizer_state,
)
from seqgan.training.policy import (
    apply_baseline,
    entropy,
    kl_to_reference,
    length_mask,
    policy_gradient_loss,
    sequence_lengths,
    straight_through_gumbel,
    token_log_probs,
)
from seqgan.training.rollout import discriminator_reward, rollout_rewards, update_rollout_policy
from seqgan.training.signals import Interrupted, StopFlag, signal_name

STAGE = "adversarial"


def policy_sampling(cfg: Config) -> SampleConfig:
    """How the g-steps sample: plain sampling at adversarial.temperature, up to adversarial.max_len.

    The d-steps' negatives are sampled the same way, so that D learns on the distribution whose
    samples it then scores (cfg.sample, which may filter or cap differently, is for evaluation).
    """
    a = cfg.adversarial
    return replace(cfg.sample, strategy="sample", temperature=a.temperature, top_k=0, top_p=1.0,
                   max_len=a.max_len or cfg.sample.max_len)


def g_step_loss(cfg: Config, gen: nn.Module, rollout: nn.Module, disc: nn.Module, ref: nn.Module | None,
                batch: dict, g: torch.Generator, running: float | None) -> tuple[torch.Tensor, dict, float | None]:
    """The generator's adversarial loss on one batch of contexts; returns (loss, stats, running baseline).

    In a distributed run `batch` holds this rank's rows of a global batch (`row_ids`: their
    global indices, `rows`: the global batch size). Samples and rollouts are keyed by global row,
    baselines are computed on the gathered rewards of all rows, and each mean is taken over the
    global batch and scaled by the world size, so that DDP's gradient average is the gradient
    one process computes for the whole batch. The stats (mean reward, D(x, Y), sample length)
    are the whole batch's too.
    """
    a = cfg.adversarial
    world = distributed.current()
    max_len = policy_sampling(cfg).max_len
    src, src_mask = batch["src"], batch["src_mask"]
    B = src.shape[0]
    row_ids = batch.get("row_ids", torch.arange(B, device=src.device))
    row_scale = world.size * B / batch.get("rows", B)  # a mean over local rows -> this rank's share
    gen.eval()  # no dropout: the log-probs below must be those of the policy that samples
    disc.eval()  # rewards and penalties come from D itself, not from a dropped-out D (d-steps set train mode)
    with torch.no_grad():
        seqs = sample(gen, src, src_mask, max_len=max_len, strategy="sample", temperature=a.temperature,
                      bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID, generator=g, row_ids=row_ids)  # (B, T)
    lengths = sequence_lengths(seqs, EOS_ID)
    mask = length_mask(lengths, seqs.shape[1])
    banned = special_ids(PAD_ID, BOS_ID, src.device)  # as in the sampler: no response's tokens
    logp, logp_full = token_log_probs(gen, src, src_mask, seqs, BOS_ID, a.temperature, banned)  # (B, T), (B, T, V)
    local_tokens = float(mask.sum())
    tok_scale = world.size * local_tokens / max(world.sum(local_tokens)[0], 1.0)  # same for token means
    # (sum, count) of each logged figure over this rank's rows; summed over ranks at the end
    sums = {"sample_len": (float(lengths.sum()), B)}

    def global_baseline(rewards, kind):
        """Advantages of this rank's rows, the baseline computed over every rank's rows."""
        all_rewards, all_mask = world.all_gather_rows(rewards), world.all_gather_rows(mask, False)
        adv, new_running = apply_baseline(all_rewards, all_mask, kind, running, a.baseline_decay,
                                          a.normalize_rewards)
        offset = int(batch.get("row_offset", 0))
        return adv[offset : offset + B, : rewards.shape[1]], new_running

    if a.objective == "seqgan":
        rewards = rollout_rewards(rollout, discriminator_reward(disc), src, src_mask, seqs, a.rollouts,
                                  max_len=max_len, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID,
                                  temperature=a.temperature, chunk_rows=a.rollout_chunk, generator=g,
                                  row_ids=row_ids)
        adv, running = global_baseline(rewards, a.baseline)
        loss = policy_gradient_loss(logp, adv, mask) * row_scale
        sums["reward"] = (float(rewards[mask].sum()), local_tokens)
        sums["d_real_prob"] = (float(rewards[torch.arange(len(seqs)), lengths - 1].sum()), B)
    else:  # penalty: CE on the real pair + lambda * E_{y~G}[-log D(x, y)]
        resp_mask = mask
        if a.estimator == "reinforce":
            with torch.no_grad():
                cost = F.softplus(-disc(src, src_mask, seqs, resp_mask).float())  # -log D(x, y), (B,)
            rewards = (-cost)[:, None].expand_as(logp) * mask  # every token gets the sequence's reward
            adv, running = global_baseline(rewards, a.baseline)
            penalty = policy_gradient_loss(logp, adv, mask) * row_scale
        else:  # gumbel: straight-through samples fed to D as distributions over the vocabulary
            # the policy's log-probs above, as logits (a softmax's shift does not change it): no
            # second forward pass, and pad and bos stay out as in the sampler
            soft = straight_through_gumbel(logp_full, seqs, a.gumbel_tau, noise=RowNoise.draw(g, row_ids))  # (B, T, V)
            cost = F.softplus(-disc(src, src_mask, soft, resp_mask).float())
            penalty = cost.mean() * row_scale
        loss = real_pair_loss(gen, batch, world) + a.penalty_lambda * penalty
        sums["reward"] = (float(-cost.detach().sum()), B)
        sums["d_real_prob"] = (float(torch.exp(-cost.detach()).sum()), B)

    if a.objective == "seqgan" and a.mle_every > 0 and batch["step"] % a.mle_every == 0:
        loss = loss + a.mle_weight * real_pair_loss(gen, batch, world)
    if a.entropy_coef > 0:
        loss = loss - a.entropy_coef * entropy(logp_full, mask) * tok_scale
    if a.kl_coef > 0 and ref is not None:
        with torch.no_grad():
            _, ref_full = token_log_probs(ref, src, src_mask, seqs, BOS_ID, a.temperature, banned)
        loss = loss + a.kl_coef * kl_to_reference(logp_full, ref_full, mask) * tok_scale
    totals = world.sum(*(x for total_count in sums.values() for x in total_count))  # every rank's rows
    stats = {k: totals[2 * i] / max(totals[2 * i + 1], 1.0) for i, k in enumerate(sums)}
    return loss, stats, running


def real_pair_loss(gen: nn.Module, batch: dict, world: distributed.World) -> torch.Tensor:
    """Teacher-forcing CE of the real responses: this rank's share of the global token mean."""
    loss_sum, ntok = mle_loss(gen, batch, reduction="sum")
    return loss_sum * (world.size / max(world.sum(ntok)[0], 1.0))


class GeneratorObjective(nn.Module):
    """The generator inside one module whose forward is the whole g-step loss.

    DDP expects one forward per backward; the g-step runs the generator several times (sampling,
    log-probs, the real pairs), so DDP wraps this module rather than the generator.
    """

    def __init__(self, gen: nn.Module):
        super().__init__()
        self.gen = gen

    def forward(self, cfg: Config, rollout: nn.Module, disc: nn.Module, ref: nn.Module | None, batch: dict,
                g: torch.Generator, running: float | None) -> tuple[torch.Tensor, dict, float | None]:
        return g_step_loss(cfg, self.gen, rollout, disc, ref, batch, g, running)


@torch.no_grad()
def validate(cfg: Config, gen: nn.Module, disc: nn.Module, valid: PairDataset, vidx: np.ndarray,
             vex: dtrain.DExamples | None, device: torch.device) -> dict:
    """Validation perplexity, distinct-2 of sampled responses, D accuracy and fooling rate."""
    nll = validation_nll(gen, valid, cfg.pretrain.batch_tokens * 2, device, max_pairs=2000)
    fakes = generate_responses(gen, contexts_of(valid, vidx), cfg.sample, device,
                               torch.Generator().manual_seed(cfg.runtime.seed + 3))
    ex = dtrain.build_examples(valid, vidx, fakes, 0.0, np.random.default_rng(0), cfg.sample.max_len)
    d = dtrain.evaluate(disc, ex, device)
    return {"valid_nll": nll, "valid_ppl": math.exp(min(nll, 50)),
            "distinct_2": distinct_n([content_tokens(f) for f in fakes], 2),
            "d_accuracy": d["accuracy"], "fooling_rate": d["fooling_rate"]}


def _refuse_another_objective(was: dict, a, run: RunDir) -> None:
    """A stage trained under one objective neither goes on nor counts as done under another (a
    finished one was skipped, and evaluate then scored the old objective's generator)."""
    keys = ("objective", "estimator") if was.get("objective", a.objective) == "penalty" == a.objective \
        else ("objective",)
    changed = [f"adversarial.{k}={was[k]}" for k in keys if k in was and was[k] != getattr(a, k)]
    if changed:
        raise ConfigError(f"the adversarial stage in {run.root} was trained with {', '.join(changed)}; pass "
                          f"that to go on, or use another --run-dir (or remove {run.root / 'checkpoints' / STAGE} "
                          "to train this stage again)")


def _better(metric: str, new: float, best: float | None) -> bool:
    if best is None:
        return True
    return new < best if metric == "valid_ppl" else new > best


def train_adversarial(cfg: Config, run: RunDir, device: torch.device, tokenizer, gen: nn.Module,
                      disc: nn.Module, d_optimizer: torch.optim.Optimizer, stop: StopFlag | None = None) -> dict:
    """Run (or resume) adversarial training from a pretrained G and D, in place."""
    a = cfg.adversarial
    train = PairDataset.load(run.split_path("train"), tokenizer.vocab_size)
    valid = PairDataset.load(run.split_path("valid"), tokenizer.vocab_size)
    rollout = copy.deepcopy(gen).eval()
    for p in rollout.parameters():
        p.requires_grad_(False)
    ref = copy.deepcopy(rollout) if a.kl_coef > 0 else None
    g_optimizer = adam(gen.parameters(), a.lr)
    world = distributed.current()
    stepper = Stepper(g_optimizer, gen, a.grad_clip, device, cfg.runtime.precision, world)
    d_stepper = Stepper(d_optimizer, disc, cfg.discriminator.grad_clip, device, cfg.runtime.precision, world)
    g = torch.Generator().manual_seed(cfg.runtime.seed + 29)
    state = {"step": 0, "best": None, "complete": False, "running": None, "nonfinite": 0, "skipped": 0,
             "d_nonfinite": 0, "d_skipped": 0}
    last_path, best_path = run.checkpoint(STAGE, "last"), run.checkpoint(STAGE, "best")
    if last_path.exists():
        ckpt = load_checkpoint(last_path, tokenizer_hash=tokenizer.hash)
        with restoring(last_path):
            load_model_state(gen, ckpt["model"], last_path)
            load_model_state(rollout, ckpt["rollout"], last_path)
            load_model_state(disc, ckpt["discriminator"], last_path)
            if ref is not None and "reference" in ckpt:
                load_model_state(ref, ckpt["reference"], last_path)
            load_optimizer_state(g_optimizer, ckpt["optimizer"])
            load_optimizer_state(d_optimizer, ckpt["d_optimizer"])
            stepper.load_state_dict(ckpt.get("amp", {}))
            d_stepper.load_state_dict(ckpt.get("d_amp", {}))
            update_state(state, ckpt["state"])
            set_rng_state(ckpt["rng"], g)
            _refuse_another_objective(ckpt["config"].get("adversarial", {}), a, run)  # a ConfigError passes
        if state["step"] < a.steps and not stopped_by_budget(a.max_minutes, state):
            state["complete"] = False  # more steps or a raised time budget: continue
        if state["complete"]:
            return {"stage": "adversarial", **state, "already_complete": True}

    def save(path) -> None:
        guard.check_weights()  # a checkpoint holds weights a resume can use
        d_guard.check_weights()
        state.update(guard.counts(), **d_guard.counts("d_"), seconds=round(seconds_before + time.monotonic() - started, 3))
        extra = {"reference": ref.state_dict()} if ref is not None else {}
        save_checkpoint(path, config=to_dict(cfg), tokenizer_hash=tokenizer.hash, model=gen.state_dict(),
                        rollout=rollout.state_dict(), discriminator=disc.state_dict(),
                        optimizer=g_optimizer.state_dict(), d_optimizer=d_optimizer.state_dict(),
                        state=dict(state), amp=stepper.state_dict(), d_amp=d_stepper.state_dict(), rng=rng_state(g),
                        model_config=to_dict(generator_config(cfg, tokenizer.vocab_size)), **extra)

    vrng = np.random.default_rng(cfg.runtime.seed + 5)
    vidx = vrng.permutation(len(valid))[: min(len(valid), 500)]
    if a.batch_size < world.size:
        raise ConfigError(f"adversarial.batch_size={a.batch_size} is smaller than the {world.size} processes")
    objective = world.wrap(GeneratorObjective(gen))  # DDP in a distributed run
    d_ddp = world.wrap(disc)
    guard = NonfiniteGuard(cfg.runtime.max_nonfinite, "adversarial generator", str(last_path), state["skipped"],
                           state["nonfinite"], gen, "adversarial.lr")
    d_guard = NonfiniteGuard(cfg.runtime.max_nonfinite, "adversarial discriminator", str(last_path),
                             state["d_skipped"], state["d_nonfinite"], disc, "discriminator.lr")
    started = last_save = time.monotonic()
    seconds_before = state.get("seconds", 0.0)  # the stage's time in earlier runs
    bar = tqdm(total=a.steps, initial=state["step"], desc=f"adversarial ({a.objective})", unit="step",
               disable=not cfg.runtime.progress, leave=False, dynamic_ncols=True)
    stop_reason = None
    d_sampling = policy_sampling(cfg)
    while state["step"] < a.steps:
        t0 = time.monotonic()
        rng = np.random.default_rng([cfg.runtime.seed, 7, state["step"]])
        stats: dict = {}
        for i in range(a.g_steps):
            idx = rng.choice(len(train), size=min(a.batch_size, len(train)), replace=False)
            rows = world.part(np.arange(len(idx)))  # this rank's rows of the global batch
            batch = to_device(collate(train, idx[rows]), device)
            # step: the g-step's number (mle_every counts g-steps)
            batch.update(step=state["step"] * a.g_steps + i, rows=len(idx), row_offset=int(rows[0]) if len(rows) else 0,
                         row_ids=torch.as_tensor(rows, device=device))
            with stepper.autocast():
                loss, stats, state["running"] = objective(cfg, rollout, disc, ref, batch, g, state["running"])
            g_optimizer.zero_grad(set_to_none=True)
            stepper.backward(loss)
            stepped = guard.record(stepper.step(loss))  # a non-finite loss or gradient: skipped and counted
            if not stepped:
                continue
            if a.objective == "seqgan":
                update_rollout_policy(rollout, gen, a.rollout_update)
        g_seconds = time.monotonic() - t0
        d_fit: dict = {}
        for k in range(a.d_steps):
            didx = rng.choice(len(train), size=min(a.d_pairs, len(train)), replace=False)
            fakes = generate_responses(gen, contexts_of(train, didx), d_sampling, device, g)
            ex = dtrain.build_examples(train, didx, fakes, cfg.discriminator.mismatch_share, rng, d_sampling.max_len)
            d_fit = dtrain.train_epochs(disc, d_optimizer, ex, a.d_epochs, cfg.discriminator, device,
                                        np.random.default_rng([cfg.runtime.seed, 8, state["step"], k]),
                                        checkpoint=str(last_path), ddp=d_ddp, precision=cfg.runtime.precision,
                                        guard=d_guard, stepper=d_stepper)
        state["step"] += 1
        samples_s = a.batch_size * a.g_steps / max(g_seconds, 1e-9)
        bar.update(1)
        bar.set_postfix(reward=f"{stats.get('reward', math.nan):.3f}", d_acc=f"{d_fit.get('accuracy', math.nan):.3f}",
                        samples_s=f"{samples_s:.1f}")
        if state["step"] % a.log_every == 0:
            run.log("adversarial", step=state["step"], loss=round(world.sum(loss.item())[0] / world.size, 4),
                    **{k: round(v, 4) for k, v in stats.items()},
                    d_loss=round(d_fit.get("loss", math.nan), 4), d_accuracy=round(d_fit.get("accuracy", math.nan), 4),
                    g_seconds=round(g_seconds, 2), samples_per_s=round(samples_s, 2))
        # budget, signals and a checkpoint's time are decided together: every rank stops and saves
        # at the same step (a save gathers every rank's random state)
        now = time.monotonic()
        over_time = budget_left(a.max_minutes, seconds_before + now - started) <= 0
        over_time, signalled, save_due = world.any(over_time, stop is not None and stop.requested,
                                                   now - last_save >= 60 * cfg.runtime.checkpoint_minutes)
        if over_time:
            stop_reason = "time budget"
        if state["step"] % a.eval_every == 0 or state["step"] >= a.steps or stop_reason:
            guard.check_weights()
            d_guard.check_weights()
            v = validate(cfg, gen, disc, valid, vidx, None, device)
            run.log("adversarial", step=state["step"], **{f"val_{k}": round(x, 4) for k, x in v.items()})
            if world.main:
                bar.write(f"adversarial step {state['step']}: valid ppl {v['valid_ppl']:.2f}, distinct-2 "
                          f"{v['distinct_2']:.3f}, D accuracy {v['d_accuracy']:.3f}, fooling rate {v['fooling_rate']:.3f}",
                          file=sys.stderr)
            if world.main_decides(_better(a.best_metric, v[a.best_metric], state["best"])):
                state["best"] = v[a.best_metric]
                save(best_path)
        if state["step"] >= a.steps or stop_reason:
            state["complete"] = True
            state["reason"] = stop_reason or "steps"
        if state["complete"] or state["step"] % cfg.runtime.checkpoint_every == 0 or save_due:
            save(last_path)
            last_save = time.monotonic()
        if stop_reason:
            break
        if signalled:
            save(last_path)
            bar.close()
            raise Interrupted(signal_name(stop), str(last_path))
    bar.close()
    if world.main_decides(not best_path.exists()):
        save(best_path)
    return {"stage": "adversarial", **state, "already_complete": False}
