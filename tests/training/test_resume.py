"""An interrupted stage resumes to exactly the weights of an uninterrupted run."""

import copy
import os
import shutil

import pytest
import torch
from support import one_line, prepared_copy, run_cli

from seqgan.config import from_dict
from seqgan.data.tokenizer import Tokenizer
from seqgan.errors import ConfigError
from seqgan.rundir import RunDir
from seqgan.runtime import seed_everything
from seqgan.training.mle import pretrain_generator
from seqgan.training.signals import Interrupted


class StopAfter:
    """Behaves like a StopFlag that receives SIGTERM after `n` checks."""

    def __init__(self, n: int):
        self.n, self.calls, self.signame = n, 0, None

    @property
    def requested(self) -> bool:
        self.calls += 1
        if self.calls >= self.n:
            self.signame = "SIGTERM"
        return self.signame is not None


def test_mle_resume_after_interrupt_equals_uninterrupted(tiny_run, tmp_path):
    a, b = prepared_copy(tiny_run, tmp_path / "a"), prepared_copy(tiny_run, tmp_path / "b")
    cfg = from_dict(a.read_config())
    cfg.runtime.checkpoint_every = 10_000  # only the interrupt saves mid-run
    tok = Tokenizer.load(a.spm_model)
    device = torch.device("cpu")
    torch.manual_seed(cfg.runtime.seed)
    full = pretrain_generator(cfg, a, device, tok)
    torch.manual_seed(cfg.runtime.seed)
    with pytest.raises(Interrupted):
        pretrain_generator(cfg, b, device, tok, stop=StopAfter(7))
    torch.manual_seed(999)  # a fresh process would not share the RNG state: the checkpoint restores it
    resumed = pretrain_generator(cfg, b, device, tok)
    assert resumed["step"] == full["step"]
    wa = torch.load(a.checkpoint("generator", "last"), weights_only=True)["model"]
    wb = torch.load(b.checkpoint("generator", "last"), weights_only=True)["model"]
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_a_learning_rate_given_on_a_resume_takes_effect_at_the_saved_point_of_the_schedule(tiny_run, tmp_path):
    """The optimizer's saved rate (and the schedule's saved peak) overrode pretrain.lr given on a
    resume; adversarial.lr likewise."""
    from seqgan.models import build_generator
    from seqgan.training.mle import generator_config
    from seqgan.training.optim import make_adamw, warmup_cosine

    run = prepared_copy(tiny_run, tmp_path / "r")
    cfg = from_dict(run.read_config())
    cfg.pretrain.max_steps, cfg.runtime.checkpoint_every = 6, 10_000
    tok = Tokenizer.load(run.spm_model)
    with pytest.raises(Interrupted):
        pretrain_generator(cfg, run, torch.device("cpu"), tok, stop=StopAfter(3))
    cfg.pretrain.lr = 0.123
    pretrain_generator(cfg, run, torch.device("cpu"), tok)
    groups = torch.load(run.checkpoint("generator", "last"), weights_only=True)["optimizer"]["param_groups"]
    # the schedule as a run begun with lr 0.123 has it after 6 steps
    reference = make_adamw(build_generator(generator_config(cfg, tok.vocab_size)), 0.123, cfg.pretrain.weight_decay)
    schedule = warmup_cosine(reference, cfg.pretrain.warmup_steps, 6, cfg.pretrain.min_lr_ratio)
    for _ in range(6):
        reference.step()
        schedule.step()
    assert [g["initial_lr"] for g in groups] == [0.123] * len(groups)
    assert [g["lr"] for g in groups] == pytest.approx([g["lr"] for g in reference.param_groups])
    # the adversarial stage (no schedule): its lr as given
    assert run_cli("pretrain", "discriminator", "--run-dir", run.root) == 0
    assert run_cli("train", "--run-dir", run.root, "adversarial.steps=1") == 0
    assert run_cli("train", "--run-dir", run.root, "adversarial.steps=2", "adversarial.lr=0.0456",
                   "discriminator.lr=0.0789") == 0
    ckpt = torch.load(run.checkpoint("adversarial", "last"), weights_only=True)
    assert {g["lr"] for g in ckpt["optimizer"]["param_groups"]} == {0.0456}
    assert {g["lr"] for g in ckpt["d_optimizer"]["param_groups"]} == {0.0789}


def test_corrupt_checkpoint_exits_2_with_message(tiny_run, tmp_path, capsys):
    r = prepared_copy(tiny_run, tmp_path / "c")
    path = r.checkpoint("generator", "last")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x80\x02 definitely not a checkpoint")
    assert run_cli("pretrain", "generator", "--run-dir", r.root) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable checkpoint" in err[0]


def test_run_lock_refuses_a_second_writer(tiny_run, tmp_path, capsys):
    r = prepared_copy(tiny_run, tmp_path / "d")
    with r.lock("train"):
        assert run_cli("pretrain", "generator", "--run-dir", r.root) == 2
    assert one_line(capsys.readouterr().err).endswith(f"is in use by another process (pid {os.getpid()}, at train)")


def _last_state(run: RunDir, stage: str) -> dict:
    return torch.load(run.checkpoint(stage, "last"), weights_only=True)["state"]


def test_a_raised_time_budget_continues_a_stage_the_old_one_stopped(tiny_run, tmp_path):
    run = prepared_copy(tiny_run, tmp_path / "r")
    tiny_budget = "pretrain.max_minutes=0.00001"  # 0.6 ms: the first step uses it up
    assert run_cli("pretrain", "generator", "--run-dir", run.root, tiny_budget) == 0
    first = _last_state(run, "generator")
    assert first["reason"] == "time budget" and first["step"] == 1 and first["seconds"] > 0.0006
    assert run_cli("pretrain", "generator", "--run-dir", run.root, tiny_budget) == 0  # nothing left of it
    assert _last_state(run, "generator")["step"] == 1
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "pretrain.max_minutes=null",
                   "pretrain.max_steps=4") == 0  # no budget: on to max_steps
    after = _last_state(run, "generator")
    assert after["step"] == 4 and after["reason"] == "max_steps" and after["seconds"] > first["seconds"]

    assert run_cli("pretrain", "discriminator", "--run-dir", run.root, "discriminator.rounds=1") == 0
    tiny_budget = "adversarial.max_minutes=0.00001"
    assert run_cli("train", "--run-dir", run.root, tiny_budget) == 0
    assert _last_state(run, "adversarial")["step"] == 1
    assert run_cli("train", "--run-dir", run.root, tiny_budget) == 0
    assert _last_state(run, "adversarial")["step"] == 1
    assert run_cli("train", "--run-dir", run.root, "adversarial.max_minutes=null", "adversarial.steps=3") == 0
    assert _last_state(run, "adversarial")["step"] == 3


def test_discriminator_resumes_inside_a_round_to_the_uninterrupted_weights(tiny_run, tmp_path):
    """A signal inside a round saves there (the round's negatives are drawn again from the saved
    sampler state on resume, then its batches go on); so do checkpoint_every's saves."""
    from seqgan.artifacts import load_generator
    from seqgan.training.discriminator import pretrain_discriminator

    a = prepared_copy(tiny_run, tmp_path / "a")
    assert run_cli("pretrain", "generator", "--run-dir", a.root, "pretrain.max_steps=2") == 0
    b = RunDir(shutil.copytree(a.root, tmp_path / "b"))
    cfg = from_dict(a.read_config())
    cfg.discriminator.rounds, cfg.discriminator.epochs_per_round = 2, 2
    tok = Tokenizer.load(a.spm_model)
    device = torch.device("cpu")
    gen, _ = load_generator(cfg, a, tok, device, "pretrained")
    torch.manual_seed(cfg.runtime.seed)  # as every process starts (runtime.setup)
    full = pretrain_discriminator(cfg, a, device, tok, gen)
    cfg.runtime.checkpoint_every = 3
    for n in (1, 5, 4):  # at the first step, then inside the resumed rounds
        # the first run starts as the uninterrupted one did; the resumed ones from their checkpoint
        torch.manual_seed(cfg.runtime.seed if n == 1 else 999 + n)
        with pytest.raises(Interrupted, match=r"checkpoint saved to .*last.pt \(round \d, epoch \d, batch \d+\)"):
            pretrain_discriminator(cfg, b, device, tok, gen, stop=StopAfter(n))
        assert "in_round" in _last_state(b, "discriminator")
    # the round in progress is cut as it was: another batching is refused, not applied to its position
    other = copy.deepcopy(cfg)
    other.discriminator.batch_size *= 2
    with pytest.raises(ConfigError, match=r"round in progress was batched with discriminator.batch_size=\d+"):
        pretrain_discriminator(other, b, device, tok, gen)
    # rounds lowered to the round that was stopped: the stage is complete (the checkpoint is kept)
    other = copy.deepcopy(cfg)
    other.discriminator.rounds = _last_state(b, "discriminator")["round"]
    done = pretrain_discriminator(other, b, device, tok, gen)
    assert done["complete"] and done["already_complete"] and "in_round" not in done
    torch.manual_seed(999)
    resumed = pretrain_discriminator(cfg, b, device, tok, gen)
    assert resumed["round"] == full["round"] == 2 and "in_round" not in _last_state(b, "discriminator")
    ca = torch.load(a.checkpoint("discriminator", "last"), weights_only=True)
    cb = torch.load(b.checkpoint("discriminator", "last"), weights_only=True)
    for k in ca["model"]:
        assert torch.equal(ca["model"][k], cb["model"][k]), k
    assert resumed["valid"] == full["valid"]


def test_a_stage_that_stops_before_its_first_checkpoint_leaves_config_yaml_as_it_was(tiny_run, tmp_path, capsys):
    """config.yaml says what the checkpoints were trained under; a stage that wrote none changes
    nothing (it recorded a refused command's overrides, e.g. after bad data)."""
    from support import one_line

    run = prepared_copy(tiny_run, tmp_path / "r")
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "pretrain.max_steps=2") == 0
    recorded, last = run.config_path.read_bytes(), run.checkpoint("generator", "last").read_bytes()
    capsys.readouterr()
    run.split_path("valid").write_bytes(b"not an npz")
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "pretrain.max_steps=4", "pretrain.lr=0.5") == 2
    assert "valid.npz" in one_line(capsys.readouterr().err)
    assert run.config_path.read_bytes() == recorded and run.checkpoint("generator", "last").read_bytes() == last


def test_a_resume_mid_epoch_refuses_another_batching(tiny_run, tmp_path, capsys):
    from support import one_line

    run = prepared_copy(tiny_run, tmp_path / "r")
    cfg = from_dict(run.read_config())
    cfg.runtime.checkpoint_every = 10_000
    tok = Tokenizer.load(run.spm_model)
    seed_everything(cfg.runtime.seed)
    with pytest.raises(Interrupted):  # stopped after 2 steps, inside the first epoch
        pretrain_generator(cfg, run, torch.device("cpu"), tok, stop=StopAfter(2))
    capsys.readouterr()
    recorded = run.config_path.read_bytes()
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "pretrain.batch_tokens=999") == 2
    assert "batched with pretrain.batch_tokens=" in one_line(capsys.readouterr().err)
    assert run.config_path.read_bytes() == recorded  # a refused resume leaves config.yaml as it was
    # the message names the setting to pass; with it the epoch goes on
    assert run_cli("pretrain", "generator", "--run-dir", run.root, f"pretrain.batch_tokens={cfg.pretrain.batch_tokens}",
                   "pretrain.max_steps=4") == 0
