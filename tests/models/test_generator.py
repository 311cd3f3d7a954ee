"""Transformer generator: cached decoding, parameter sharing, learning, sampling options."""

import pytest
import torch

from seqgan.models import build_generator
from seqgan.models.generator import GeneratorConfig, TransformerGenerator
from seqgan.models.sampling import beam_search, filter_logits, sample
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
def test_cached_steps_equal_full_forward(conditional, share):
    gen = make(conditional, share)
    src, mask, tgt = batch()
    if not conditional:
        src = mask = None
    full = gen(src, mask, tgt)
    state = gen.start(src, mask, batch_size=tgt.shape[0])
    parts = [gen.step(state, tgt[:, :3])] + [gen.step(state, tgt[:, i : i + 1]) for i in range(3, tgt.shape[1])]
    assert torch.allclose(full, torch.cat(parts, 1), atol=1e-5)
    assert state.length == tgt.shape[1]


def uncached_greedy(gen, src, mask, steps, bos=2):
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


def _layer_params(H, F, cross):
    attn = 4 * H * H + 4 * H  # q (H*H+H), kv (2H*H+2H), out (H*H+H)
    ff = H * F + F + F * H + H
    norms = (3 if cross else 2) * 2 * H
    return attn * (2 if cross else 1) + ff + norms


def test_parameter_counts_shared_vs_unshared():
    H, F, E, L = 32, 64, 16, 3
    emb = V * E + E * H + 24 * H  # tokens, factorized projection, positions
    head = H * E + V + 2 * H  # out projection, output bias, final decoder norm (tied output)
    enc, dec = _layer_params(H, F, cross=False), _layer_params(H, F, cross=True)
    shared = emb + head + enc + 2 * H + dec  # + encoder final norm
    assert make(share=True).num_parameters() == shared
    assert make(share=False).num_parameters() == shared + (L - 1) * (enc + dec)
    untied = make(tie=False).num_parameters()
    assert untied == shared + E * V
    assert make(embed=32).num_parameters() == shared - V * 16 + V * 32 - 16 * 32 - 32 * 16  # no projections


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
    assert torch.equal(out[:, : tgt.shape[1]], tgt)


def test_sampling_options():
    gen = make(seed=2)
    src, mask, _ = batch(1)
    greedy = sample(gen, src, mask, max_len=8, strategy="greedy", eos_id=None)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(sample(gen, src, mask, max_len=8, top_k=1, eos_id=None, generator=g), greedy)
    assert torch.equal(sample(gen, src, mask, max_len=8, temperature=1e-4, eos_id=None, generator=g), greedy)
    assert torch.equal(sample(gen, src, mask, max_len=8, strategy="beam", num_beams=1, eos_id=None), greedy)
    a = sample(gen, src, mask, max_len=8, generator=torch.Generator().manual_seed(5), eos_id=None)
    b = sample(gen, src, mask, max_len=8, generator=torch.Generator().manual_seed(5), eos_id=None)
    assert torch.equal(a, b)
    c = sample(gen, src, mask, max_len=8, generator=torch.Generator().manual_seed(6), eos_id=None)
    assert not torch.equal(a, c)


def test_eos_stops_rows_and_pads_after():
    gen = make(seed=3)
    with torch.no_grad():
        gen.out_bias[3] = 4.0  # make eos likely
    src, mask, _ = batch(2, B=16)
    out = sample(gen, src, mask, max_len=12, generator=torch.Generator().manual_seed(0))
    for row in out.tolist():
        if 3 in row:
            k = row.index(3)
            assert all(t == 1 for t in row[k + 1 :])
    assert (out == 3).any()


def test_beam_search_finds_higher_likelihood_than_greedy():
    gen = make(seed=4)
    with torch.no_grad():  # a peaked, non-uniform model, where greedy is often not the best sequence
        for p in gen.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    src, mask, _ = batch(3, B=16)

    def seq_logp(seqs):
        lp = torch.log_softmax(gen(src, mask, shift_right(seqs, 2)), -1).gather(-1, seqs[..., None]).squeeze(-1)
        return lp.sum(1)

    greedy = sample(gen, src, mask, max_len=6, strategy="greedy", eos_id=None)
    beam = beam_search(gen, src, mask, max_len=6, num_beams=5, eos_id=None)
    assert (seq_logp(beam) >= seq_logp(greedy) - 1e-5).all()
    assert (seq_logp(beam) > seq_logp(greedy) + 1e-6).any()


def test_select_repeats_rows():
    gen = make()
    src, mask, tgt = batch()
    state = gen.start(src, mask)
    gen.step(state, tgt[:, :2])
    rep = state.select(torch.tensor([1, 1, 3]))
    a = gen.step(rep, tgt[[1, 1, 3], 2:3])
    ref = gen(src, mask, tgt[:, :3])[:, 2]
    assert torch.allclose(a[:, 0], ref[[1, 1, 3]], atol=1e-5)


def test_filter_logits():
    x = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert torch.isinf(filter_logits(x, top_k=2)).tolist() == [[True, False, False, True]]
    p = torch.softmax(x, -1)[0]  # 0.087, 0.644, 0.237, 0.032
    kept = ~torch.isinf(filter_logits(x, top_p=0.7))
    assert kept.tolist() == [[False, True, True, False]] and p[1] < 0.7
    assert (~torch.isinf(filter_logits(x, top_p=0.5))).sum() == 1


def test_factory_rejects_missing_vocab():
    with pytest.raises(ValueError):
        build_generator(GeneratorConfig())


def test_inverse_cdf_sampling_matches_probabilities_and_skips_zeros():
    from seqgan.models.sampling import inverse_cdf_sample

    probs = torch.tensor([[0.0, 0.5, 0.0, 0.3, 0.2]]).expand(40000, -1)
    idx = inverse_cdf_sample(probs, torch.Generator().manual_seed(0))
    freq = torch.bincount(idx, minlength=5).float() / len(idx)
    assert freq[0] == 0 and freq[2] == 0
    assert torch.allclose(freq, probs[0], atol=0.01)
