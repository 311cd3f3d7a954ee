"""The SeqGAN paper's synthetic-data experiment (section 4), with the original code's settings.

An oracle LSTM makes the "real" data; the generator is pretrained by MLE, the discriminator on
real vs generated sequences, then SeqGAN's adversarial rounds run. NLL-oracle (the mean per-token
NLL of generator samples under the oracle) is logged every `eval_every` epochs/rounds. The loop
uses the same pieces as dialogue training (mle_loss, rollout_rewards, policy_gradient_loss,
discriminator epochs): the data and the metric differ, not the algorithm. It resumes at epoch or
round boundaries with every RNG state restored, so an interrupted run ends where an uninterrupted
one would; evaluations draw their own random numbers, so how often a run evaluates does not change
its training.
"""

from __future__ import annotations

import copy
import hashlib
import math
import sys
import time
from dataclasses import replace

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from seqgan.config import Config, DiscriminatorTrainConfig, OracleConfig, RuntimeConfig, to_dict
from seqgan.errors import ConfigError
from seqgan.models import build_discriminator, build_generator
from seqgan.models.discriminator import DiscriminatorConfig
from seqgan.models.generator import GeneratorConfig
from seqgan.oracle.oracle import load_oracle, make_oracle, nll_oracle, sample_oracle
from seqgan.rundir import RunDir, atomic_write_text, duration, to_json
from seqgan.runtime import setup
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
from seqgan.training.mle import mle_loss
from seqgan.training.optim import NonfiniteGuard, Stepper, adam, load_optimizer_state
from seqgan.training.policy import (
    apply_baseline,
    policy_gradient_loss,
    shift_right,
    token_log_probs,
)
from seqgan.training.rollout import discriminator_reward, rollout_rewards, update_rollout_policy
from seqgan.training.signals import Interrupted, StopFlag, signal_name

D_GRAD_CLIP = 1e9  # the original clips no discriminator gradient
PAPER = {"mle": 9.038, "seqgan": 8.736, "original_code_round_150": 8.683}  # its published log stops there
STAGE = "oracle"


def generator_for(cfg: Config) -> nn.Module:
    o = cfg.oracle
    if o.generator == "lstm":
        gcfg = GeneratorConfig(arch="lstm", conditional=False, vocab_size=o.vocab_size, embed_dim=o.embed_dim,
                               hidden_dim=o.hidden_dim, max_len=o.seq_len + 1, dropout=0.0)
        gen = build_generator(gcfg)
        gen.init_normal_(o.gen_init_std)
        return gen
    gcfg = replace(cfg.model.generator, conditional=False, vocab_size=o.vocab_size, max_len=o.seq_len + 1)
    return build_generator(gcfg)


def discriminator_for(cfg: Config) -> nn.Module:
    o = cfg.oracle
    if o.discriminator == "cnn":
        dcfg = DiscriminatorConfig(arch="cnn", conditional=False, vocab_size=o.vocab_size, embed_dim=o.d_embed_dim,
                                   max_len=o.seq_len, dropout=o.d_dropout,
                                   filter_sizes=list(cfg.model.discriminator.filter_sizes),
                                   num_filters=list(cfg.model.discriminator.num_filters))
    else:
        dcfg = replace(cfg.model.discriminator, arch="transformer", conditional=False, vocab_size=o.vocab_size,
                       max_len=o.seq_len)
    return build_discriminator(dcfg)


@torch.no_grad()
def sample_generator(gen: nn.Module, num: int, seq_len: int, batch_size: int, g: torch.Generator) -> torch.Tensor:
    """num x seq_len sequences from an unconditional generator (start token 0, no eos)."""
    gen.eval()
    out = sample_oracle(gen, num, seq_len, start_token=0, batch_size=min(batch_size, 1024), generator=g)
    gen.train()
    return out


def mle_epoch(gen: nn.Module, opt: torch.optim.Optimizer, real: torch.Tensor, batch_size: int, grad_clip: float,
              rng: np.random.Generator, device: torch.device, precision: str = "fp32",
              guard: NonfiniteGuard | None = None, stepper: Stepper | None = None) -> int:
    """One teacher-forced epoch over the oracle's samples (N, T) in a shuffled order, the forward
    under `precision`'s autocast. Returns the number of non-finite steps it skipped; `guard` (by
    default a fresh one with `runtime.max_nonfinite`'s default limit) raises FloatingPointError at
    its limit in a row. Pass one guard to every epoch for the count in a row to span them, and one
    `stepper` for fp16's loss scale to carry over."""
    gen.train()
    stepper = stepper or Stepper(opt, gen, grad_clip, device, precision)
    guard = guard or NonfiniteGuard(RuntimeConfig.max_nonfinite, "MLE")
    skipped_before = guard.skipped
    perm = rng.permutation(len(real))
    for s in range(0, len(real), batch_size):
        x = real[perm[s : s + batch_size]].to(device)  # (B, T)
        with stepper.autocast():
            loss, _ = mle_loss(gen, {"src": None, "src_mask": None, "tgt_in": shift_right(x, 0), "tgt_out": x},
                               ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        stepper.backward(loss)
        guard.record(stepper.step(loss))
    return guard.skipped - skipped_before


def discriminator_epochs(disc: nn.Module, opt: torch.optim.Optimizer, real: torch.Tensor, fake: torch.Tensor,
                         epochs: int, o: OracleConfig, rng: np.random.Generator, device: torch.device,
                         precision: str = "fp32", checkpoint: str = "", guard: NonfiniteGuard | None = None,
                         stepper: Stepper | None = None) -> dict:
    """k epochs of D over real (label 1) and generated (label 0) sequences, batches half and half,
    the forward under `precision`'s autocast; the CNN's L2 term on its output layer; no gradient
    clipping (the original has none). Pass one `stepper` to every call of a run (fp16's loss scale)."""
    dcfg = DiscriminatorTrainConfig(batch_size=o.batch_size, grad_clip=D_GRAD_CLIP, label_smoothing=0.0)
    l2 = (lambda d: o.d_l2 * d.l2_penalty()) if hasattr(disc, "l2_penalty") and o.d_l2 > 0 else None
    return dtrain.train_epochs(disc, opt, _examples(real, fake), epochs, dcfg, device, rng, min_len=o.seq_len,
                               extra_loss=l2, precision=precision, checkpoint=checkpoint, guard=guard, stepper=stepper)


def generator_step(gen: nn.Module, rollout: nn.Module, reward, opt: torch.optim.Optimizer, batch_size: int,
                   seq_len: int, rollouts: int, grad_clip: float, chunk_rows: int, g: torch.Generator,
                   device: torch.device, precision: str = "fp32", pg_loss: str = "sum",
                   stepper: Stepper | None = None) -> tuple[torch.Tensor, bool]:
    """One adversarial generator step: a batch of samples, Monte-Carlo rollout rewards under D,
    policy gradient without a baseline (as the original), its forward under `precision`'s
    autocast (sampling and rollouts stay fp32). `pg_loss="sum"` sums -log G(y_t) * Q_t over the
    batch's tokens as the original does, so its gradient is batch_size times the row mean's and
    the clipping at `grad_clip` acts on that sum. Returns the rewards (B, T) and whether the step
    was taken (False: a non-finite loss or gradient, skipped). Pass one `stepper` to every step:
    under fp16 its loss scale, lowered after an overflow, must carry over to the next step."""
    seqs = sample_generator(gen, batch_size, seq_len, batch_size, g).to(device)  # (B, T)
    rewards = rollout_rewards(rollout, reward, None, None, seqs, rollouts, max_len=seq_len, bos_id=0, eos_id=None,
                              pad_id=0, chunk_rows=chunk_rows, generator=g)
    mask = torch.ones_like(seqs, dtype=torch.bool)
    adv, _ = apply_baseline(rewards, mask, "none")  # the original: no baseline
    gen.eval()  # the log-probs of the policy that sampled (a transformer generator's dropout off)
    stepper = stepper or Stepper(opt, gen, grad_clip, device, precision)
    with stepper.autocast():
        logp, _ = token_log_probs(gen, None, None, seqs, bos_id=0)
    loss = policy_gradient_loss(logp, adv, mask)  # the row mean
    if pg_loss == "sum":
        loss = loss * len(seqs)
    opt.zero_grad(set_to_none=True)
    stepper.backward(loss)
    taken = stepper.step(loss)
    gen.train()
    return rewards, taken


# what may change when a run resumes: how far it goes and how often it evaluates (pg_loss has its
# own check; the oracle itself is compared by its weights, not by the path it was read from); a
# phase's length also may, until the next phase has begun
RESUMABLE_ORACLE_KEYS = ("adv_rounds", "eval_every", "pg_loss", "params")


def _fingerprint(oracle: nn.Module) -> str:
    """A hash of the oracle's weights: the same oracle whatever path or seed gave it."""
    h = hashlib.sha256()
    for name, t in sorted(oracle.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _check_same_experiment(cfg: Config, ckpt: dict, oracle_hash: str, run: RunDir) -> None:
    """Refuse to resume a run under settings that define another experiment (its oracle, seed,
    models or protocol): the curve would mix two of them."""
    old, state = ckpt.get("config", {}), ckpt.get("state", {})
    was = old.get("oracle", {})
    now = to_dict(cfg)["oracle"]
    free = set(RESUMABLE_ORACLE_KEYS)
    if state.get("adv_round", 0) == 0:
        free.add("d_pretrain_rounds")
        if state.get("d_round", 0) == 0:
            free.add("mle_epochs")
    changed = [f"oracle.{k}={was[k]!r}" for k in now if k not in free and k in was and was[k] != now[k]]
    seed = old.get("runtime", {}).get("seed", cfg.runtime.seed)
    if seed != cfg.runtime.seed:
        changed.append(f"runtime.seed={seed}")
    precision = old.get("runtime", {}).get("precision", cfg.runtime.precision)  # bf16 trains other numbers
    if precision != cfg.runtime.precision:
        changed.append(f"runtime.precision={precision}")
    if ckpt.get("oracle_hash", oracle_hash) != oracle_hash:
        changed.append(f"the oracle of oracle.params={was.get('params')!r}")
    if changed:
        raise ConfigError(f"the run in {run.root} was started with {', '.join(changed)}; resume with "
                          f"{'that' if len(changed) == 1 else 'those'} (changing it mixes two experiments in one "
                          "curve), or use another --run-dir")


def _eval_generator(seed: int, phase: str, index: int) -> torch.Generator:
    """The random numbers of one NLL-oracle evaluation: a function of the seed, phase and index only."""
    key = np.random.SeedSequence([seed, 4, ("mle", "adversarial").index(phase), index]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(key))


def _examples(real: torch.Tensor, fake: torch.Tensor) -> dtrain.DExamples:
    n_r, n_f = len(real), len(fake)
    empty = np.zeros(0, dtype=np.int64)
    responses = [r for r in real.numpy()] + [f for f in fake.numpy()]
    labels = np.concatenate([np.ones(n_r), np.zeros(n_f)]).astype(np.float32)
    return dtrain.DExamples([empty] * (n_r + n_f), responses, labels)


def run_oracle(cfg: Config, run: RunDir, stop: StopFlag | None = None) -> dict:
    """Run (or resume) the whole protocol in `run`; return the figures and the NLL-oracle curve.
    After `stop` is requested (SIGINT/SIGTERM), the epoch or round in progress ends, is saved, and
    Interrupted is raised."""
    o = cfg.oracle
    run.check_new_run_allowed(oracle=True)
    device = setup(cfg.runtime)
    if cfg.runtime.tensorboard:
        run.enable_tensorboard()
    seed = cfg.runtime.seed
    if o.params:
        oracle = load_oracle(o.params)
    else:
        oracle = make_oracle(o.vocab_size, o.embed_dim, o.hidden_dim, seed)
    oracle = oracle.to(device).eval()
    vocab = oracle.config.vocab_size if hasattr(oracle, "config") else o.vocab_size
    if vocab != o.vocab_size:
        cfg = replace(cfg, oracle=replace(o, vocab_size=vocab))
        o = cfg.oracle
    real = sample_oracle(oracle, o.num_samples, o.seq_len, start_token=0,
                         generator=torch.Generator().manual_seed(seed))  # (N, T)
    self_nll = nll_oracle(oracle, real, start_token=0, batch_size=1024)

    gen = generator_for(cfg).to(device)
    disc = discriminator_for(cfg).to(device)
    g_opt = adam(gen.parameters(), o.gen_lr)
    d_opt = adam(disc.parameters(), o.d_lr)
    adv_opt = adam(gen.parameters(), o.gen_lr)
    amp: dict = {}
    rollout = None
    g = torch.Generator().manual_seed(seed + 1)
    state = {"epoch": 0, "d_round": 0, "adv_round": 0, "curve": [], "complete": False, "skipped_steps": 0,
             "nonfinite": {}, "seconds": {"mle": 0.0, "d_pretrain": 0.0, "adversarial": 0.0}}
    path = run.checkpoint(STAGE, "last")
    oracle_hash = _fingerprint(oracle)
    if path.exists():
        ckpt = load_checkpoint(path)
        with restoring(path):
            _check_same_experiment(cfg, ckpt, oracle_hash, run)
            load_model_state(gen, ckpt["model"], path)
            load_model_state(disc, ckpt["discriminator"], path)
            load_optimizer_state(g_opt, ckpt["optimizer"])
            load_optimizer_state(d_opt, ckpt["d_optimizer"])
            load_optimizer_state(adv_opt, ckpt["adv_optimizer"])
            amp = ckpt.get("amp", {})
            if "rollout" in ckpt:
                rollout = copy.deepcopy(gen)
                load_model_state(rollout, ckpt["rollout"], path)
            update_state(state, ckpt["state"])
            set_rng_state(ckpt["rng"], g)
            # checkpoints from before oracle.pg_loss existed were trained with the row mean
            was = ckpt["config"].get("oracle", {}).get("pg_loss", "row_mean")
        if state["adv_round"] > 0 and was != o.pg_loss:
            raise ConfigError(f"the adversarial rounds in {run.root} were run with oracle.pg_loss={was}; resume "
                              f"with oracle.pg_loss={was} (changing the loss mid-run mixes two protocols), or use "
                              "another --run-dir")

    # one Stepper per optimizer for the whole run, fp16's loss scale carried over from step to step
    # (made after the checks above: a CPU's note on emulated precision follows a refusal, not before it)
    precision = cfg.runtime.precision
    steppers = {"mle": Stepper(g_opt, gen, o.grad_clip, device, precision),
                "discriminator": Stepper(d_opt, disc, D_GRAD_CLIP, device, precision),
                "generator": Stepper(adv_opt, gen, o.grad_clip, device, precision)}
    for k, stepper in steppers.items():
        stepper.load_state_dict(amp.get(k, {}))
    # one guard per kind of step for the whole run: its count in a row spans epochs, rounds and resumes
    guards = {k: NonfiniteGuard(cfg.runtime.max_nonfinite, what, str(path), in_a_row=state["nonfinite"].get(k, 0))
              for k, what in (("mle", "MLE"), ("discriminator", "discriminator"), ("generator", "generator"))}

    def save() -> None:
        state["nonfinite"] = {k: guard.in_a_row for k, guard in guards.items()}
        extra = {"rollout": rollout.state_dict()} if rollout is not None else {}
        save_checkpoint(path, config=to_dict(cfg), tokenizer_hash=None, oracle_hash=oracle_hash, model=gen.state_dict(),
                        discriminator=disc.state_dict(), optimizer=g_opt.state_dict(), d_optimizer=d_opt.state_dict(),
                        adv_optimizer=adv_opt.state_dict(), state=dict(state), rng=rng_state(g),
                        amp={k: stepper.state_dict() for k, stepper in steppers.items()}, **extra)

    def save_and_check() -> None:
        save()
        if stop is not None and stop.requested:
            raise Interrupted(signal_name(stop), str(path))

    def evaluate(phase: str, index: int) -> float:
        # its own random numbers, not the training's `g`: how often a run evaluates (eval_every, or
        # the last epoch of a phase that a resume extends) leaves its training unchanged
        samples = sample_generator(gen, o.num_samples, o.seq_len, o.num_samples, _eval_generator(seed, phase, index))
        nll = nll_oracle(oracle, samples.to(device), start_token=0, batch_size=1024)
        state["curve"].append({"phase": phase, "index": index, "nll_oracle": round(nll, 4)})
        run.log("oracle", phase=phase, index=index, nll_oracle=round(nll, 4))
        tqdm.write(f"oracle {phase} {index}: NLL-oracle {nll:.3f}{_pace(phase, index)}", file=sys.stderr)
        return nll

    def _pace(phase: str, index: int) -> str:
        """How long an epoch or round has taken in this phase so far, and what that leaves. The
        MLE evaluation follows its epoch; the adversarial one comes early in its round."""
        if index == 0:
            return ""
        if phase == "mle":
            each, left = state["seconds"]["mle"] / index, o.mle_epochs - index - 1
            unit = "an epoch"
        else:
            each, left = state["seconds"]["adversarial"] / index, o.adv_rounds - index
            unit = "a round"
        rest = f", about {duration(each * left)} left in this phase" if left > 0 else ""
        return f" ({duration(each)} {unit}{rest})"

    run.write_config(cfg)
    progress = cfg.runtime.progress

    def d_epochs(epochs: int, rng: np.random.Generator) -> dict:
        fake = sample_generator(gen, o.num_samples, o.seq_len, o.num_samples, g)
        fit = discriminator_epochs(disc, d_opt, real, fake, epochs, o, rng, device, precision=precision,
                                   checkpoint=str(path), guard=guards["discriminator"],
                                   stepper=steppers["discriminator"])
        state["skipped_steps"] += fit["skipped_steps"]
        return fit

    # 1. MLE pretraining of the generator
    t0 = time.monotonic()
    bar = tqdm(total=o.mle_epochs, initial=state["epoch"], desc="oracle: MLE", disable=not progress, leave=False)
    while state["epoch"] < o.mle_epochs:
        state["skipped_steps"] += mle_epoch(gen, g_opt, real, o.batch_size, o.grad_clip,
                                            np.random.default_rng([seed, 1, state["epoch"]]), device, precision,
                                            guard=guards["mle"], stepper=steppers["mle"])
        if state["epoch"] % o.eval_every == 0 or state["epoch"] == o.mle_epochs - 1:
            evaluate("mle", state["epoch"])
        state["epoch"] += 1
        bar.update(1)
        state["seconds"]["mle"] += time.monotonic() - t0
        t0 = time.monotonic()
        save_and_check()
    bar.close()
    mle_nll = next((c["nll_oracle"] for c in reversed(state["curve"]) if c["phase"] == "mle"), math.nan)

    # 2. Discriminator pretraining: rounds of (fresh negatives, k epochs)
    t0 = time.monotonic()
    bar = tqdm(total=o.d_pretrain_rounds, initial=state["d_round"], desc="oracle: D pretrain", disable=not progress,
               leave=False)
    while state["d_round"] < o.d_pretrain_rounds:
        fit = d_epochs(o.d_epochs, np.random.default_rng([seed, 2, state["d_round"]]))
        state["d_round"] += 1
        run.log("oracle", phase="d_pretrain", round=state["d_round"], d_loss=round(fit["loss"], 4),
                d_accuracy=round(fit["accuracy"], 4))
        bar.update(1)
        bar.set_postfix(d_acc=f"{fit['accuracy']:.3f}")
        state["seconds"]["d_pretrain"] += time.monotonic() - t0
        t0 = time.monotonic()
        save_and_check()
    bar.close()

    # 3. Adversarial rounds: 1 g-step (rollout rewards, policy gradient), rollout update, D steps
    t0 = time.monotonic()
    bar = tqdm(total=o.adv_rounds, initial=state["adv_round"], desc="oracle: adversarial", disable=not progress,
               leave=False)
    reward = discriminator_reward(disc)
    while state["adv_round"] < o.adv_rounds:
        r = state["adv_round"]
        if rollout is None:  # the rollout policy starts as a copy of the pretrained generator
            rollout = copy.deepcopy(gen)
        disc.eval()
        rewards, stepped = generator_step(gen, rollout, reward, adv_opt, o.batch_size, o.seq_len, o.rollouts,
                                          o.grad_clip, cfg.adversarial.rollout_chunk, g, device, precision,
                                          o.pg_loss, stepper=steppers["generator"])
        state["skipped_steps"] += not guards["generator"].record(stepped)
        if r % o.eval_every == 0 or r == o.adv_rounds - 1:
            evaluate("adversarial", r)
        update_rollout_policy(rollout, gen, o.rollout_update)
        fit = {}
        for k in range(o.adv_d_steps):
            fit = d_epochs(o.adv_d_epochs, np.random.default_rng([seed, 3, r, k]))
        state["adv_round"] += 1
        run.log("oracle", phase="adversarial", round=state["adv_round"], reward=round(float(rewards.mean()), 4),
                d_accuracy=round(fit.get("accuracy", math.nan), 4))
        bar.update(1)
        bar.set_postfix(reward=f"{float(rewards.mean()):.3f}", d_acc=f"{fit.get('accuracy', math.nan):.3f}")
        state["seconds"]["adversarial"] += time.monotonic() - t0
        t0 = time.monotonic()
        save_and_check()
    bar.close()
    state["complete"] = state["adv_round"] >= o.adv_rounds
    save()
    adv_nll = next((c["nll_oracle"] for c in reversed(state["curve"]) if c["phase"] == "adversarial"), math.nan)
    result = {
        "oracle_self_nll": round(self_nll, 4),
        "mle_nll_oracle": mle_nll,
        "adversarial_nll_oracle": adv_nll,
        "best_adversarial_nll_oracle": min((c["nll_oracle"] for c in state["curve"] if c["phase"] == "adversarial"),
                                           default=math.nan),
        "paper": PAPER,
        "seconds": {k: round(v, 1) for k, v in state["seconds"].items()},
        "complete": state["complete"],
        "skipped_steps": state["skipped_steps"],
        "curve": state["curve"],
    }
    atomic_write_text(run.root / "oracle.json", to_json(result, indent=2) + "\n")
    return result
