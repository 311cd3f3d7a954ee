"""Transformer discriminator: soft inputs, padding, context, truncation, learning."""

import pytest
import torch
import torch.nn.functional as F

from seqgan.models.discriminator import DiscriminatorConfig, TransformerDiscriminator

V = 30


def make(conditional=True, seed=0) -> TransformerDiscriminator:
    torch.manual_seed(seed)
    return TransformerDiscriminator(DiscriminatorConfig(vocab_size=V, embed_dim=16, hidden_dim=32, ff_dim=64,
                                                        num_layers=2, num_heads=2, dropout=0.0, max_len=16,
                                                        conditional=conditional)).eval()


def data(seed=0, B=5):
    g = torch.Generator().manual_seed(seed)
    ctx = torch.randint(4, V, (B, 6), generator=g)
    resp = torch.randint(4, V, (B, 8), generator=g)
    return ctx, torch.ones_like(ctx, dtype=torch.bool), resp, torch.ones_like(resp, dtype=torch.bool)


@pytest.mark.parametrize("conditional", [True, False])
def test_soft_one_hot_equals_ids_and_carries_gradient(conditional):
    d = make(conditional)
    ctx, cm, resp, rm = data()
    by_ids = d(ctx, cm, resp, rm)
    soft = F.one_hot(resp, V).float().requires_grad_(True)
    by_probs = d(ctx, cm, soft, rm)
    assert torch.allclose(by_ids, by_probs, atol=1e-5)
    by_probs.sum().backward()
    assert soft.grad.abs().sum() > 0


@pytest.mark.parametrize("conditional", [True, False])
def test_padding_does_not_change_the_logit(conditional):
    d = make(conditional)
    ctx, cm, resp, rm = data()
    base = d(ctx, cm, resp, rm)
    pad = lambda x, n, v: torch.cat([x, torch.full((x.shape[0], n), v, dtype=x.dtype)], 1)  # noqa: E731
    padded = d(pad(ctx, 3, 1), pad(cm, 3, False), pad(resp, 4, 1), pad(rm, 4, False))
    assert torch.allclose(base, padded, atol=1e-5)


def test_context_matters_when_conditional():
    d = make(True)
    ctx, cm, resp, rm = data()
    other = torch.roll(ctx, 1, 0)
    assert not torch.allclose(d(ctx, cm, resp, rm), d(other, cm, resp, rm))
    u = make(False)
    assert torch.allclose(u(ctx, cm, resp, rm), u(other, cm, resp, rm))


def test_long_contexts_keep_their_most_recent_tokens():
    d = make(True)  # max_len 16
    _, _, resp, rm = data(B=2)
    g = torch.Generator().manual_seed(4)
    ctx = torch.randint(4, V, (2, 30), generator=g)
    cm = torch.ones_like(ctx, dtype=torch.bool)
    cm[1, 20:] = False  # row 1: 20 real tokens, then padding
    ctx[1, 20:] = 1
    logits = d(ctx, cm, resp, rm)
    last0, last1 = ctx[:1, -16:], ctx[1:, 4:20]
    ones = torch.ones(1, 16, dtype=torch.bool)
    assert torch.allclose(logits[0], d(last0, ones, resp[:1], rm[:1])[0], atol=1e-5)
    assert torch.allclose(logits[1], d(last1, ones, resp[1:], rm[1:])[0], atol=1e-5)
    with pytest.raises(ValueError, match="ctx"):
        d(None, None, resp, rm)


def test_learns_a_context_dependent_toy_task():
    """Contexts from two topics (low / high token ids); a real response is on its context's topic."""
    d = make(True, seed=1).train()
    g = torch.Generator().manual_seed(2)
    opt = torch.optim.Adam(d.parameters(), lr=3e-3)

    def toy(n):
        topic = torch.randint(0, 2, (n, 1), generator=g)
        ctx = torch.randint(4, 17, (n, 5), generator=g) + 13 * topic
        y = torch.randint(0, 2, (n,), generator=g).float()
        resp = torch.randint(4, 17, (n, 6), generator=g) + 13 * torch.where(y[:, None] > 0, topic, 1 - topic)
        return ctx, torch.ones_like(ctx, dtype=torch.bool), resp, torch.ones_like(resp, dtype=torch.bool), y

    for _ in range(150):
        ctx, cm, resp, rm, y = toy(64)
        loss = F.binary_cross_entropy_with_logits(d(ctx, cm, resp, rm), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ctx, cm, resp, rm, y = toy(512)
    acc = ((d.eval()(ctx, cm, resp, rm) > 0).float() == y).float().mean()
    assert acc > 0.95
    # the same responses judged without their own context are no better than chance for a
    # discriminator that only reads the response: the task needs the context
    u = make(False, seed=1).train()
    opt = torch.optim.Adam(u.parameters(), lr=3e-3)
    for _ in range(150):
        ctx, cm, resp, rm, y = toy(64)
        loss = F.binary_cross_entropy_with_logits(u(ctx, cm, resp, rm), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ctx, cm, resp, rm, y = toy(512)
    assert ((u.eval()(ctx, cm, resp, rm) > 0).float() == y).float().mean() < 0.6
