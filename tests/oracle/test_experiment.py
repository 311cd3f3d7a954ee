"""`seqgan oracle` end to end on the tiny preset: figures, curve, exact resume, precision, and
the skipping of non-finite steps."""

import copy
import json
import re
import signal

import numpy as np
import pytest
import torch
from support import run_cli

import seqgan.oracle.experiment as experiment
from seqgan.config import load_config
from seqgan.oracle.experiment import discriminator_for, generator_for, generator_step, mle_epoch
from seqgan.rundir import RunDir
from seqgan.training.optim import NonfiniteGuard, adam
from seqgan.training.rollout import discriminator_reward


def test_oracle_tiny_end_to_end_and_resume(tmp_path, capsys):
    a = tmp_path / "a"
    assert run_cli("oracle", "--config", "tiny", "--run-dir", a, "--json") == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    # every evaluation after the first says how long a unit took and what is left of the phase
    assert re.search(r"^oracle mle 2: NLL-oracle \d\.\d{3} \(\d+\.\d s an epoch, about \d+\.\d s left in this "
                     r"phase\)$", captured.err, re.M)
    assert re.search(r"^oracle mle 3: NLL-oracle \d\.\d{3} \(\d+\.\d s an epoch\)$", captured.err, re.M)
    assert re.search(r"^oracle adversarial 0: NLL-oracle \d\.\d{3}$", captured.err, re.M)
    assert set(out) >= {"oracle_self_nll", "mle_nll_oracle", "adversarial_nll_oracle", "curve"}
    phases = [c["phase"] for c in out["curve"]]
    assert "mle" in phases and "adversarial" in phases and out["complete"]
    assert out["oracle_self_nll"] < out["mle_nll_oracle"]  # the oracle knows its own data best
    assert out["skipped_steps"] == 0
    # a dialogue command there says what the folder holds (its 'seqgan prepare' would be refused)
    assert run_cli("pretrain", "generator", "--run-dir", a) == 2
    assert "holds an oracle experiment, not a dialogue run" in capsys.readouterr().err
    # the same run, stopped after the MLE phase and resumed, reaches the same generator
    b = tmp_path / "b"
    assert run_cli("oracle", "--config", "tiny", "--run-dir", b, "oracle.d_pretrain_rounds=0",
                   "oracle.adv_rounds=0") == 0
    assert run_cli("oracle", "--config", "tiny", "--run-dir", b, "--json") == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert resumed["curve"] == out["curve"]
    wa = torch.load(RunDir(a).checkpoint("oracle", "last"), weights_only=True)["model"]
    wb = torch.load(RunDir(b).checkpoint("oracle", "last"), weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_sigterm_ends_the_round_in_progress_saves_and_the_resumed_run_matches(tmp_path, capsys, monkeypatch):
    rounds = ("oracle.adv_rounds=3",)
    assert run_cli("oracle", "--config", "tiny", "--run-dir", tmp_path / "whole", *rounds, "--json") == 0
    whole = json.loads(capsys.readouterr().out)
    real = experiment.generator_step

    def step(*args, **kwargs):  # SIGTERM arrives during the first adversarial round
        signal.raise_signal(signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(experiment, "generator_step", step)
    run = tmp_path / "stopped"
    assert run_cli("oracle", "--config", "tiny", "--run-dir", run, *rounds) == 128 + signal.SIGTERM
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("seqgan oracle: stopped: SIGTERM received: checkpoint saved to ")
    assert err[-1].endswith("; run the same command to resume")
    assert torch.load(RunDir(run).checkpoint("oracle", "last"), weights_only=True)["state"]["adv_round"] == 1
    monkeypatch.setattr(experiment, "generator_step", real)
    assert run_cli("oracle", "--config", "tiny", "--run-dir", run, *rounds, "--json") == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert resumed["complete"] and resumed["curve"] == whole["curve"]


def _weights(run) -> dict:
    ckpt = torch.load(RunDir(run).checkpoint("oracle", "last"), weights_only=True)
    return {f"{part}.{k}": v for part in ("model", "discriminator", "rollout") for k, v in ckpt[part].items()}


def test_how_often_a_run_evaluates_leaves_its_training_unchanged(tmp_path, capsys):
    """Evaluating every epoch and round, and a run stopped after 2 rounds (its last round is
    evaluated) then extended to 4, train the very weights of a run evaluated every other one."""
    assert run_cli("oracle", "--config", "tiny", "--run-dir", tmp_path / "a", "oracle.adv_rounds=4", "--json") == 0
    a = json.loads(capsys.readouterr().out)
    b = tmp_path / "b"
    assert run_cli("oracle", "--config", "tiny", "--run-dir", b, "oracle.adv_rounds=2", "oracle.eval_every=1") == 0
    assert run_cli("oracle", "--config", "tiny", "--run-dir", b, "oracle.adv_rounds=4", "oracle.eval_every=1",
                   "--json") == 0
    curve_b = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["curve"]
    assert len(curve_b) > len(a["curve"])
    wa, wb = _weights(tmp_path / "a"), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # an evaluation's samples depend on its generator, phase and index only: shared points agree
    points_b = {(c["phase"], c["index"]): c["nll_oracle"] for c in curve_b}
    assert all(points_b[(c["phase"], c["index"])] == c["nll_oracle"] for c in a["curve"])


def test_the_oracle_trains_under_fp16_its_loss_scale_carried_from_step_to_step(tmp_path, capsys):
    """fp16's first steps overflow at the initial scale of 2**16; a Stepper kept for the run lowers
    it and the later steps are taken (one made afresh for each step skipped every generator step)."""
    run = tmp_path / "r"
    assert run_cli("oracle", "--config", "tiny", "--run-dir", run, "runtime.precision=fp16", "oracle.adv_rounds=12",
                   "--json") == 0
    out = json.loads(capsys.readouterr().out)
    ckpt = torch.load(RunDir(run).checkpoint("oracle", "last"), weights_only=True)
    assert out["complete"] and out["skipped_steps"] < 12
    assert ckpt["state"]["nonfinite"]["generator"] == 0  # the last generator step was taken
    scales = {k: amp["scaler"]["scale"] for k, amp in ckpt["amp"].items()}
    assert set(scales) == {"mle", "discriminator", "generator"} and scales["generator"] < 2.0**16


def test_a_resume_with_another_policy_gradient_loss_is_refused(tmp_path, capsys):
    run = tmp_path / "r"
    assert run_cli("oracle", "--config", "tiny", "--run-dir", run, "oracle.pg_loss=row_mean") == 0
    capsys.readouterr()
    assert run_cli("oracle", "--config", "tiny", "--run-dir", run, "oracle.adv_rounds=3") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "were run with oracle.pg_loss=row_mean; resume with oracle.pg_loss=row_mean" in err[0]
    assert torch.load(RunDir(run).checkpoint("oracle", "last"), weights_only=True)["state"]["adv_round"] == 2
    # a checkpoint from before the setting existed counts as the row mean
    path = RunDir(run).checkpoint("oracle", "last")
    ckpt = torch.load(path, weights_only=True)
    del ckpt["config"]["oracle"]["pg_loss"]
    torch.save(ckpt, path)
    assert run_cli("oracle", "--config", "tiny", "--run-dir", run, "oracle.adv_rounds=3") == 2
    assert run_cli("oracle", "--config", "tiny", "--run-dir", run, "oracle.adv_rounds=3", "oracle.pg_loss=row_mean",
                   "--json") == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["complete"]


def test_a_resume_under_another_experiment_is_refused_and_changes_nothing(tmp_path, capsys):
    run = tmp_path / "r"
    assert run_cli("oracle", "--config", "tiny", "--run-dir", run) == 0
    capsys.readouterr()
    files = [RunDir(run).checkpoint("oracle", "last"), run / "oracle.json", run / "config.yaml"]
    before = [f.read_bytes() for f in files]
    for args, names in [(["runtime.seed=99"], ["runtime.seed=1234", "the oracle of oracle.params=None"]),
                        (["oracle.mle_epochs=6", "oracle.rollouts=3"], ["oracle.mle_epochs=", "oracle.rollouts="]),
                        (["runtime.precision=bf16"], ["runtime.precision=fp32"])]:
        assert run_cli("oracle", "--run-dir", run, *args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"the run in {run} was started with" in err[0], err
        assert all(n in err[0] for n in names), (names, err[0])
    assert [f.read_bytes() for f in files] == before
    # how far the run goes may change: more rounds continue it
    assert run_cli("oracle", "--run-dir", run, "oracle.adv_rounds=3") == 0
    assert torch.load(files[0], weights_only=True)["state"]["adv_round"] == 3


def test_an_oracle_run_resumes_whatever_the_corpus_and_tokenizer_sections_say(tmp_path, capsys):
    """The oracle reads no corpus and no tokenizer: a new default there (or an override) does not
    stop a resume with the preset, as tokenizer.character_coverage's did; its models' do."""
    run = tmp_path / "r"
    assert run_cli("oracle", "--config", "tiny", "--run-dir", run, "tokenizer.character_coverage=0.9995") == 0
    capsys.readouterr()
    assert run_cli("oracle", "--config", "tiny", "--run-dir", run, "oracle.adv_rounds=3",
                   "data.corpus=dailydialog") == 0
    assert torch.load(RunDir(run).checkpoint("oracle", "last"), weights_only=True)["state"]["adv_round"] == 3
    capsys.readouterr()
    assert run_cli("oracle", "--config", "tiny", "--run-dir", run, "oracle.adv_rounds=4",
                   "model.generator.hidden_dim=16") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config conflicts with the run in" in err[0] and "model.generator.hidden_dim" in err[0]
    assert torch.load(RunDir(run).checkpoint("oracle", "last"), weights_only=True)["state"]["adv_round"] == 3


def test_oracle_trains_under_bf16_autocast(tmp_path, capsys):
    """`runtime.precision=bf16` reaches the oracle's training steps (the run differs from fp32) and
    MLE still learns; NLL-oracle is measured in fp32 either way."""
    common = ("--config", "tiny", "oracle.mle_epochs=6", "oracle.eval_every=5", "--json")
    assert run_cli("oracle", "--run-dir", tmp_path / "fp32", *common) == 0
    fp32 = json.loads(capsys.readouterr().out)
    assert run_cli("oracle", "--run-dir", tmp_path / "bf16", "runtime.precision=bf16", *common) == 0
    bf16 = json.loads(capsys.readouterr().out)
    mle = [c["nll_oracle"] for c in bf16["curve"] if c["phase"] == "mle"]
    assert mle[-1] < mle[0] - 0.1
    assert bf16["curve"] != fp32["curve"]
    assert bf16["oracle_self_nll"] == fp32["oracle_self_nll"]  # the same oracle data


def test_a_diverging_discriminator_stops_the_oracle_with_exit_1_and_a_finite_checkpoint(tmp_path, capsys):
    run = tmp_path / "r"
    assert run_cli("oracle", "--config", "tiny", "--run-dir", run, "oracle.d_lr=1e30") == 1
    err = capsys.readouterr().err.strip().splitlines()
    last = str(RunDir(run).checkpoint("oracle", "last"))
    assert err[-1] == f"seqgan oracle: stopped: 10 non-finite discriminator steps in a row; last good checkpoint " \
                      f"kept at {last}"
    ckpt = torch.load(RunDir(run).checkpoint("oracle", "last"), weights_only=True)
    assert ckpt["state"]["epoch"] == 4 and ckpt["state"]["d_round"] == 0  # the MLE phase's last save
    assert all(torch.isfinite(v).all() for v in ckpt["discriminator"].values())


def _tiny_models():
    cfg = load_config("tiny")
    torch.manual_seed(0)
    gen = generator_for(cfg)
    return cfg, gen, adam(gen.parameters(), cfg.oracle.gen_lr)


def test_a_non_finite_mle_step_is_skipped_and_too_many_in_a_row_stop():
    cfg, gen, opt = _tiny_models()
    o = cfg.oracle
    real = torch.randint(0, o.vocab_size, (4 * o.batch_size, o.seq_len), generator=torch.Generator().manual_seed(0))
    assert mle_epoch(gen, opt, real, o.batch_size, o.grad_clip, np.random.default_rng(0), torch.device("cpu")) == 0
    with torch.no_grad():
        next(gen.parameters()).fill_(float("nan"))
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    assert mle_epoch(gen, opt, real, o.batch_size, o.grad_clip, np.random.default_rng(0), torch.device("cpu"),
                     guard=NonfiniteGuard(5, "MLE")) == 4
    assert all(torch.equal(before[k].nan_to_num(), v.nan_to_num()) for k, v in gen.state_dict().items())
    with pytest.raises(FloatingPointError, match="3 non-finite MLE steps in a row"):
        mle_epoch(gen, opt, real, o.batch_size, o.grad_clip, np.random.default_rng(0), torch.device("cpu"),
                  guard=NonfiniteGuard(3, "MLE"))
    # one guard for every epoch: its count in a row goes on from one epoch into the next
    guard = NonfiniteGuard(6, "MLE")
    assert mle_epoch(gen, opt, real, o.batch_size, o.grad_clip, np.random.default_rng(0), torch.device("cpu"),
                     guard=guard) == 4
    with pytest.raises(FloatingPointError, match="6 non-finite MLE steps in a row"):
        mle_epoch(gen, opt, real, o.batch_size, o.grad_clip, np.random.default_rng(0), torch.device("cpu"),
                  guard=guard)


def test_the_count_of_non_finite_generator_steps_in_a_row_survives_a_resume(tmp_path, capsys, monkeypatch):
    def step(gen, rollout, reward, opt, batch_size, seq_len, *args, **kwargs):  # every generator step is non-finite
        return torch.zeros(batch_size, seq_len), False

    monkeypatch.setattr(experiment, "generator_step", step)
    run = tmp_path / "r"
    assert run_cli("oracle", "--config", "tiny", "--run-dir", run, "--json") == 0
    assert json.loads(capsys.readouterr().out)["skipped_steps"] == 2
    state = torch.load(RunDir(run).checkpoint("oracle", "last"), weights_only=True)["state"]
    assert state["nonfinite"] == {"mle": 0, "discriminator": 0, "generator": 2}
    # one more round with a limit of 3: the resumed count makes it the third in a row
    assert run_cli("oracle", "--config", "tiny", "--run-dir", run, "oracle.adv_rounds=3",
                   "runtime.max_nonfinite=3") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("seqgan oracle: stopped: 3 non-finite generator steps in a row; last good checkpoint")


def test_a_non_finite_generator_step_is_reported_and_not_taken():
    cfg, gen, opt = _tiny_models()
    o = cfg.oracle
    disc = discriminator_for(cfg)
    args = (discriminator_reward(disc), opt, o.batch_size, o.seq_len, o.rollouts, o.grad_clip, 64,
            torch.Generator().manual_seed(0), torch.device("cpu"))
    rollout = copy.deepcopy(gen)
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    rewards, stepped = generator_step(gen, rollout, *args)
    assert stepped and rewards.shape == (o.batch_size, o.seq_len)
    assert any(not torch.equal(before[k], v) for k, v in gen.state_dict().items())
    with torch.no_grad():
        for p in disc.parameters():
            p.fill_(float("nan"))  # NaN rewards, hence a NaN policy-gradient loss
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    rewards, stepped = generator_step(gen, rollout, *args)
    assert torch.isnan(rewards).all() and not stepped
    assert all(torch.equal(before[k], v) for k, v in gen.state_dict().items())


class _KeepGradient(torch.optim.Optimizer):
    """Takes no step; keeps the (clipped) gradient it was given."""

    def __init__(self, params):
        super().__init__(params, {})

    def step(self, closure=None):
        self.gradient = torch.cat([p.grad.flatten() for group in self.param_groups for p in group["params"]
                                   if p.grad is not None])  # the LSTM's fixed second bias has none


@pytest.mark.parametrize("clip", [1e9, 1e-3])
def test_the_generator_step_sums_the_policy_gradient_over_the_batch_as_the_original(clip):
    """pg_loss=sum: the step's gradient is batch_size times the row mean's, and the clipping acts
    on that sum (with a small clip both gradients end up the same)."""
    cfg, gen, _ = _tiny_models()
    o = cfg.oracle
    disc = discriminator_for(cfg).eval()
    gradient = {}
    for pg_loss in ("sum", "row_mean"):
        opt = _KeepGradient(gen.parameters())
        generator_step(gen, copy.deepcopy(gen), discriminator_reward(disc), opt, o.batch_size, o.seq_len, o.rollouts,
                       clip, 64, torch.Generator().manual_seed(0), torch.device("cpu"), pg_loss=pg_loss)
        gradient[pg_loss] = opt.gradient
    if clip > 1:
        assert gradient["row_mean"].norm() > 1e-4
        torch.testing.assert_close(gradient["sum"], o.batch_size * gradient["row_mean"])
    else:
        assert gradient["row_mean"].norm().item() == pytest.approx(clip, rel=1e-2)
        torch.testing.assert_close(gradient["sum"], gradient["row_mean"])


def test_the_generator_step_takes_log_probs_of_the_policy_that_sampled(monkeypatch):
    """A transformer generator's dropout is off for the policy-gradient forward, as in sampling."""
    cfg = load_config("tiny", ["oracle.generator=transformer", "model.generator.dropout=0.3"])
    o = cfg.oracle
    torch.manual_seed(0)
    gen = generator_for(cfg)
    modes = []
    real = experiment.token_log_probs

    def recorded(model, *args, **kwargs):
        modes.append(model.training)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(experiment, "token_log_probs", recorded)
    _, stepped = generator_step(gen, copy.deepcopy(gen), discriminator_reward(discriminator_for(cfg).eval()),
                                adam(gen.parameters(), o.gen_lr), o.batch_size, o.seq_len, o.rollouts, o.grad_clip, 64,
                                torch.Generator().manual_seed(0), torch.device("cpu"))
    assert stepped and modes == [False] and gen.training  # train mode again for what follows (MLE)
