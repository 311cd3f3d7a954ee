"""The adversarial objectives really move the generator (gradients exist, a reward is learned), and
the stage scores with D in eval mode, samples its d-step negatives as the g-steps do and mixes MLE
every `mle_every` g-steps."""

import copy
import shutil

import torch
import torch.nn.functional as F
from support import run_cli
from torch import nn

from seqgan.config import Config
from seqgan.models.generator import GeneratorConfig, TransformerGenerator
from seqgan.models.sampling import sample
from seqgan.training import adversarial
from seqgan.training.adversarial import g_step_loss
from seqgan.training.mle import mle_loss
from seqgan.training.policy import sequence_lengths, shift_right

V, BOS, EOS, PAD, TARGET = 16, 2, 3, 1, 5


class EndsWithToken(nn.Module):
    """A fixed 'discriminator': logit +3 when the response's last content token is TARGET, else -3.

    Accepts ids (B, T) or distributions (B, T, V), like the real discriminators."""

    def forward(self, ctx, ctx_mask, resp, resp_mask):
        probs = resp if resp.dim() == 3 else F.one_hot(resp, V).float()  # (B, T, V)
        L = resp_mask.sum(1)  # tokens incl. eos
        last = (L - 2).clamp(min=0)  # the token before eos
        p_target = probs[torch.arange(len(L)), last, TARGET]
        return 6 * p_target - 3


class ModeRecorder(EndsWithToken):
    """EndsWithToken that records whether it was in training mode at each call."""

    def __init__(self):
        super().__init__()
        self.dropout = nn.Dropout(0.5)  # a D with dropout, as the real ones have
        self.modes: list[bool] = []

    def forward(self, ctx, ctx_mask, resp, resp_mask):
        self.modes.append(self.training)
        return super().forward(ctx, ctx_mask, resp, resp_mask)


def toy_batch(n: int, g: torch.Generator) -> dict:
    """Contexts of 4 tokens; responses of 3 tokens from 4..11 then eos (TARGET ends 1/8 of them)."""
    src = torch.randint(4, 12, (n, 4), generator=g)
    resp = torch.cat([torch.randint(4, 12, (n, 3), generator=g), torch.full((n, 1), EOS)], 1)
    return {"src": src, "src_mask": torch.ones_like(src, dtype=torch.bool), "tgt_in": shift_right(resp, BOS),
            "tgt_out": resp}


def pretrained_generator() -> TransformerGenerator:
    torch.manual_seed(0)
    gen = TransformerGenerator(GeneratorConfig(vocab_size=V, embed_dim=16, hidden_dim=32, ff_dim=64, num_layers=1,
                                               num_heads=2, dropout=0.0, max_len=12))
    opt = torch.optim.Adam(gen.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        loss, _ = mle_loss(gen, toy_batch(64, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return gen


def target_rate(gen: nn.Module, seed: int = 123) -> float:
    g = torch.Generator().manual_seed(seed)
    b = toy_batch(512, g)
    seqs = sample(gen.eval(), b["src"], b["src_mask"], max_len=8, bos_id=BOS, eos_id=EOS, pad_id=PAD, generator=g)
    lengths = sequence_lengths(seqs, EOS)
    mask = torch.arange(seqs.shape[1])[None] < lengths[:, None]
    return float((EndsWithToken()(None, None, seqs, mask) > 0).float().mean())


def config(**adv) -> Config:
    cfg = Config()
    cfg.sample.max_len = 8
    cfg.adversarial.mle_every = 0
    for k, v in adv.items():
        setattr(cfg.adversarial, k, v)
    return cfg


def test_seqgan_policy_gradient_learns_the_discriminators_preference():
    gen = pretrained_generator()
    before = target_rate(gen)
    cfg = config(objective="seqgan", rollouts=4, baseline="batch_mean")
    rollout = copy.deepcopy(gen)
    disc = EndsWithToken()
    opt = torch.optim.Adam(gen.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    running = None
    for step in range(40):
        batch = toy_batch(32, g)
        batch["step"] = step
        loss, stats, running = g_step_loss(cfg, gen, rollout, disc, None, batch, g, running)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for b, t in zip(rollout.parameters(), gen.parameters(), strict=False):
                b.mul_(0.8).add_(t, alpha=0.2)
    after = target_rate(gen)
    assert before < 0.25, before
    assert after > 0.6, (before, after)


def test_rewards_and_penalties_score_with_the_discriminator_in_eval_mode():
    gen = pretrained_generator()
    g = torch.Generator().manual_seed(4)
    batch = toy_batch(8, g)
    batch["step"] = 0
    for objective, estimator in (("seqgan", "reinforce"), ("penalty", "reinforce"), ("penalty", "gumbel")):
        disc = ModeRecorder().train()  # as the d-steps leave it
        cfg = config(objective=objective, estimator=estimator, rollouts=2)
        g_step_loss(cfg, gen, gen, disc, None, batch, g, None)
        assert disc.modes and not any(disc.modes), (objective, estimator, disc.modes)


def test_penalty_estimators_give_the_generator_a_gradient_argmax_does_not():
    gen = pretrained_generator()
    disc = EndsWithToken()
    g = torch.Generator().manual_seed(2)
    batch = toy_batch(16, g)
    batch["step"] = 0
    for estimator in ("reinforce", "gumbel"):
        cfg = config(objective="penalty", estimator=estimator, penalty_lambda=1.0)
        gen.zero_grad()
        loss, _, _ = g_step_loss(cfg, gen, gen, disc, None, batch, g, None)
        ce, _ = mle_loss(gen, batch)
        penalty_grad = torch.autograd.grad(loss - ce, list(gen.parameters()), allow_unused=True)
        total = sum(float(p.abs().sum()) for p in penalty_grad if p is not None)
        assert total > 0, estimator
    # the original project's penalty: -log D of an argmax sample. Token ids are not differentiable,
    # so the term is a constant for the generator.
    logits = gen(batch["src"], batch["src_mask"], batch["tgt_in"])
    ids = logits.argmax(-1)
    penalty = F.softplus(-disc(None, None, ids, torch.ones_like(ids, dtype=torch.bool))).mean()
    assert not penalty.requires_grad


def test_every_estimator_reads_the_sampling_policy_with_pad_and_bos_at_probability_zero(monkeypatch):
    gen = pretrained_generator()
    g = torch.Generator().manual_seed(2)
    batch = toy_batch(8, g)
    batch["step"] = 0
    seen = {}
    real_log_probs, real_gumbel = adversarial.token_log_probs, adversarial.straight_through_gumbel
    monkeypatch.setattr(adversarial, "token_log_probs", lambda *a: seen.setdefault("logp", real_log_probs(*a)))
    monkeypatch.setattr(adversarial, "straight_through_gumbel",
                        lambda logits, *a, **k: real_gumbel(seen.setdefault("gumbel", logits), *a, **k))
    for objective, estimator in (("seqgan", "reinforce"), ("penalty", "gumbel")):
        g_step_loss(config(objective=objective, estimator=estimator), gen, gen, EndsWithToken(), None, batch, g, None)
    probs = seen["logp"][1].exp()  # (B, T, V)
    assert (probs[..., [PAD, BOS]] == 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:2]))
    assert (seen["gumbel"][..., [PAD, BOS]] < -1e8).all()


def test_gumbel_penalty_learns_the_discriminators_preference():
    gen = pretrained_generator()
    before = target_rate(gen)
    cfg = config(objective="penalty", estimator="gumbel", penalty_lambda=2.0, gumbel_tau=1.0)
    disc = EndsWithToken()
    opt = torch.optim.Adam(gen.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(3)
    for step in range(40):
        batch = toy_batch(32, g)
        batch["step"] = step
        loss, _, _ = g_step_loss(cfg, gen, gen, disc, None, batch, g, None)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = target_rate(gen)
    assert after > before + 0.2, (before, after)


def pretrained_run(tiny_run, tmp_path):
    """A copy of the tiny run with a briefly pretrained generator and discriminator."""
    run = tmp_path / "r"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("metrics.jsonl", ".lock"))
    assert run_cli("pretrain", "generator", "--run-dir", run, "pretrain.max_steps=3") == 0
    assert run_cli("pretrain", "discriminator", "--run-dir", run, "discriminator.rounds=1") == 0
    return run


def test_d_step_negatives_are_sampled_like_the_g_steps(tiny_run, tmp_path, monkeypatch):
    run = pretrained_run(tiny_run, tmp_path)
    seen = []
    real = adversarial.generate_responses

    def spy(gen, contexts, opts, *args, **kwargs):
        seen.append((len(contexts), opts.strategy, opts.temperature, opts.top_k, opts.max_len))
        return real(gen, contexts, opts, *args, **kwargs)

    real_examples, cuts = adversarial.dtrain.build_examples, []

    def examples(data, idx, fakes, share, rng, max_len):
        ex = real_examples(data, idx, fakes, share, rng, max_len)
        cuts.append((len(idx), max_len, max(len(r) for r in ex.responses)))
        return ex

    monkeypatch.setattr(adversarial, "generate_responses", spy)
    monkeypatch.setattr(adversarial.dtrain, "build_examples", examples)
    assert run_cli("train", "--run-dir", run, "adversarial.steps=2", "adversarial.eval_every=100",
                   "adversarial.max_len=6", "adversarial.temperature=0.7", "sample.max_len=20",
                   "sample.top_k=5") == 0
    d_steps = [s for s in seen if s[0] == 64]  # d_pairs: 64 in the tiny preset
    assert d_steps == [(64, "sample", 0.7, 0, 6)] * 2  # the g-steps' policy, not `sample.*`
    evaluation = [s for s in seen if s[0] != 64]
    assert evaluation and all(s[3] == 5 and s[4] == 20 for s in evaluation)  # evaluation keeps `sample.*`
    # D's real examples are cut where its negatives' sampler stops (the tiny corpus has longer replies)
    assert [c for c in cuts if c[0] == 64] == [(64, 6, 6)] * 2
    assert all(c[1] == 20 for c in cuts if c[0] != 64)


def test_mle_mixing_counts_g_steps_not_rounds(tiny_run, tmp_path, monkeypatch):
    run = pretrained_run(tiny_run, tmp_path)
    events = []
    real_loss, real_pair = adversarial.g_step_loss, adversarial.real_pair_loss

    def g_step(cfg, gen, rollout, disc, ref, batch, g, running):
        events.append(batch["step"])
        return real_loss(cfg, gen, rollout, disc, ref, batch, g, running)

    def pair(*args, **kwargs):
        events.append("mle")
        return real_pair(*args, **kwargs)

    monkeypatch.setattr(adversarial, "g_step_loss", g_step)
    monkeypatch.setattr(adversarial, "real_pair_loss", pair)
    assert run_cli("train", "--run-dir", run, "adversarial.steps=2", "adversarial.g_steps=3",
                   "adversarial.mle_every=2", "adversarial.eval_every=100") == 0
    # 2 rounds x 3 g-steps numbered 0..5; the MLE term joins every second g-step
    assert events == [0, "mle", 1, 2, "mle", 3, 4, "mle", 5]


def test_another_objective_neither_resumes_nor_counts_the_stage_as_done(tiny_run, tmp_path, capsys):
    """`seqgan run ... adversarial.objective=penalty` on a finished run skipped the stage, and
    evaluate then scored the seqgan-trained generator as if it were the penalty one."""
    from support import one_line

    from seqgan.rundir import RunDir

    run = pretrained_run(tiny_run, tmp_path)
    assert run_cli("train", "--run-dir", run, "adversarial.steps=1", "adversarial.eval_every=100") == 0
    recorded = RunDir(run).config_path.read_bytes()
    capsys.readouterr()
    for extra in (["adversarial.objective=penalty"], ["adversarial.steps=2", "adversarial.objective=penalty"]):
        assert run_cli("train", "--run-dir", run, "adversarial.eval_every=100", *extra) == 2
        assert "was trained with adversarial.objective=seqgan" in one_line(capsys.readouterr().err)
    assert RunDir(run).config_path.read_bytes() == recorded
    # the estimator does not matter to the seqgan objective
    assert run_cli("train", "--run-dir", run, "adversarial.steps=1", "adversarial.eval_every=100",
                   "adversarial.estimator=gumbel") == 0


def test_train_says_when_discriminator_pretraining_has_not_finished(tiny_run, tmp_path, capsys):
    import torch

    from seqgan.rundir import RunDir

    run = pretrained_run(tiny_run, tmp_path)
    path = RunDir(run).checkpoint("discriminator", "last")
    ckpt = torch.load(path, weights_only=True)
    ckpt["state"].update(complete=False, round=0)  # as if stopped inside its first round
    torch.save(ckpt, path)
    capsys.readouterr()
    assert run_cli("train", "--run-dir", run, "adversarial.steps=1", "adversarial.eval_every=100") == 0
    assert "discriminator pretraining has not finished (round 0 of 1 done)" in capsys.readouterr().err
    assert run_cli("train", "--run-dir", run, "adversarial.steps=1", "adversarial.eval_every=100") == 0
    assert "has not finished" not in capsys.readouterr().err  # the adversarial stage has its own D now
