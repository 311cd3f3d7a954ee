"""Transformer generator: cached decoding, parameter sharing, padding, learning."""

import pytest
import torch

from seqgan.models import build_generator
from seqgan.models.generator import GeneratorConfig, TransformerGenerator
from seqgan.models.sampling import sample
from seqgan.training.policy import shift_right

V = 40


def make(conditional=True, share=True, tie=True, embed=16, seed=0, **kw) -> TransformerGenerator:
    torch.manual_seed(seed)
    cfg = GeneratorConfig(vocab_size=V, embed_dim=embed, hidden_dim=32, ff_dim=64, num_layers=3, num_heads=4,
                          dropout=0.0, max_len=24, conditional=conditional, share_layers=share, tie_embeddings=tie, **kw)
    return TransformerGenerator(cfg).eval()


def batch(seed=0, B=4, S=7, T=9):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (B, S), generator=g)
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[0, 4:] = False
    src[0, 4:] = 1
    return src, mask, torch.randint(4, V, (B, T), generator=g)


@pytest.mark.parametrize("conditional", [True, False])
@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize("embed,tie", [(16, True), (32, False)])
def test_cached_steps_equal_full_forward(conditional, share, embed, tie):
    gen = make(conditional, share, tie=tie, embed=embed)
    src, mask, tgt = batch()
    if not conditional:
        src = mask = None
    full = gen(src, mask, tgt)
    state = gen.start(src, mask, batch_size=tgt.shape[0])
    parts = [gen.step(state, tgt[:, :3])] + [gen.step(state, tgt[:, i : i + 1]) for i in range(3, tgt.shape[1])]
    assert torch.allclose(full, torch.cat(parts, 1), atol=1e-5)
    assert state.length == tgt.shape[1]


def uncached_greedy(gen, src, mask, steps, bos=2):
    """The reference: re-run the whole model over the prefix for every token."""
    y = torch.full((src.shape[0], 1), bos)
    for _ in range(steps):
        nxt = gen(src, mask, y)[:, -1].argmax(-1)
        y = torch.cat([y, nxt[:, None]], 1)
    return y[:, 1:]


def test_greedy_cached_equals_uncached_loop():
    gen = make()
    src, mask, _ = batch()
    ours = sample(gen, src, mask, max_len=10, strategy="greedy", eos_id=None)
    assert torch.equal(ours, uncached_greedy(gen, src, mask, 10))


def test_context_padding_does_not_change_the_logits():
    gen = make(seed=5)
    src, mask, tgt = batch()
    row = gen(src[:1, :4], None, tgt[:1])  # row 0 has 4 real context tokens
    padded = gen(torch.cat([src, torch.ones(4, 3, dtype=torch.long)], 1),
                 torch.cat([mask, torch.zeros(4, 3, dtype=torch.bool)], 1), tgt)[:1]
    assert torch.allclose(row, padded, atol=1e-5)
    other = gen(torch.roll(src, 1, 0), torch.roll(mask, 1, 0), tgt)
    assert not torch.allclose(other[1:], gen(src, mask, tgt)[1:], atol=1e-4)  # the context matters
    # a row without context (a library caller may pass one) reads the same at any padding width
    empty = torch.zeros_like(mask)
    assert torch.allclose(gen(src, empty, tgt), gen(torch.cat([src, src], 1), torch.cat([empty, empty], 1), tgt),
                          atol=1e-5)


def _layer_params(H, F, cross):
    attn = 4 * H * H + 4 * H  # q (H*H+H), kv (2H*H+2H), out (H*H+H)
    ff = H * F + F + F * H + H
    norms = (3 if cross else 2) * 2 * H
    return attn * (2 if cross else 1) + ff + norms


def test_parameter_counts_shared_vs_unshared():
    H, F, E, L = 32, 64, 16, 3
    emb = V * E + E * H + 24 * H  # tokens, factorized projection, positions (max_len 24)
    head = H * E + V + 2 * H  # out projection, output bias, final decoder norm (tied output)
    enc, dec = _layer_params(H, F, cross=False), _layer_params(H, F, cross=True)
    shared = emb + head + enc + 2 * H + dec  # + encoder final norm
    assert make(share=True).num_parameters() == shared
    assert make(share=False).num_parameters() == shared + (L - 1) * (enc + dec)
    assert make(tie=False).num_parameters() == shared + E * V
    assert make(embed=32).num_parameters() == shared - V * 16 + V * 32 - 16 * 32 - 32 * 16  # no projections
    dec_only = emb + head + _layer_params(H, F, cross=False)  # no encoder, no cross-attention
    assert make(conditional=False).num_parameters() == dec_only


def test_select_repeats_rows_and_shares_the_memory():
    gen = make()
    src, mask, tgt = batch()
    state = gen.start(src, mask)
    assert len({id(c.memory) for c in state.caches}) == 1  # one shared layer: its memory is computed once
    gen.step(state, tgt[:, :2])
    index = torch.tensor([1, 1, 3, 0])
    rep = state.select(index)
    assert rep.length == 2 and rep.batch_size == 4
    assert len({id(c.memory) for c in rep.caches}) == 1
    a = gen.step(rep, tgt[index, 2:4])
    ref = gen(src[index], mask[index], tgt[index, :4])[:, 2:4]
    assert torch.allclose(a, ref, atol=1e-5)
    unshared = make(share=False)
    assert len({id(c.memory) for c in unshared.start(src, mask).caches}) == 3


def test_start_and_step_reject_bad_use():
    gen = make()
    with pytest.raises(ValueError, match="src"):
        gen.start(None, None, batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        make(conditional=False).start(None, None)
    src, mask, _ = batch()
    state = gen.start(src, mask)
    gen.step(state, torch.full((4, 20), 5))
    with pytest.raises(ValueError, match="max_len"):
        gen.step(state, torch.full((4, 5), 5))
    with pytest.raises(ValueError, match="vocab_size"):
        build_generator(GeneratorConfig())  # no vocabulary size


def test_overfits_tiny_data_and_greedy_reproduces_targets():
    gen = make(seed=1)
    gen.train()
    g = torch.Generator().manual_seed(3)
    src = torch.randint(4, V, (8, 5), generator=g)
    mask = torch.ones_like(src, dtype=torch.bool)
    tgt = torch.cat([torch.randint(4, V, (8, 6), generator=g), torch.full((8, 1), 3)], 1)
    opt = torch.optim.Adam(gen.parameters(), lr=5e-3)
    for _ in range(300):
        logits = gen(src, mask, shift_right(tgt, 2))
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.02
    out = sample(gen.eval(), src, mask, max_len=10, strategy="greedy")
    assert torch.equal(out, tgt)  # every row stops at its eos, so nothing is left to trim
