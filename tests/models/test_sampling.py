"""The sampling API: on a hand-made model with known answers, and on the Transformer generator."""

import pytest
import torch
from torch import nn

from seqgan.models.generator import GeneratorConfig, TransformerGenerator
from seqgan.models.sampling import (
    beam_search,
    continue_sampling,
    filter_logits,
    inverse_cdf_sample,
    pick_tokens,
    sample,
)
from seqgan.training.policy import shift_right

BOS, EOS, PAD = 2, 3, 1


class ToyState:
    def __init__(self, first: torch.Tensor, length: int = 0):
        self.first, self.length = first, length  # (B,) the context's first token

    def select(self, index: torch.Tensor) -> "ToyState":
        return ToyState(self.first[index], self.length)


class Bigram(nn.Module):
    """Next-token logits from a table (V, V) indexed by the previous token; after bos, by the
    context's first token. Any module with start/step/select must plug into the sampler."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table, requires_grad=False)
        self.calls = 0

    def start(self, src, src_mask, batch_size=None) -> ToyState:
        first = src[:, 0] if src is not None else torch.full((batch_size,), BOS)
        return ToyState(first)

    def step(self, state: ToyState, tokens: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        prev = tokens.clone()
        if state.length == 0:
            prev[:, 0] = state.first
        state.length += tokens.shape[1]
        return self.table[prev]  # (B, k, V)


def chain(V: int = 16) -> Bigram:
    """Deterministic chain t -> t + 1 for 4 <= t < V - 1, and V - 1 -> eos."""
    table = torch.zeros(V, V)
    for t in range(4, V - 1):
        table[t, t + 1] = 10.0
    table[V - 1, EOS] = 10.0
    table[EOS, PAD] = 10.0
    return Bigram(table)


def test_rows_stop_at_their_eos_pad_after_and_the_loop_ends_early():
    model = chain()
    src = torch.tensor([[13, 4], [10, 4]])
    out = sample(model, src, None, max_len=12, strategy="greedy")
    assert out.tolist() == [[14, 15, EOS, PAD, PAD, PAD], [11, 12, 13, 14, 15, EOS]]
    assert model.calls == 6  # bos + 5 tokens fed; the 6th token ended the last row
    g = torch.Generator().manual_seed(0)
    assert torch.equal(sample(model, src, None, max_len=12, temperature=0.5, generator=g), out)
    cut = sample(model, src, None, max_len=4, strategy="greedy")
    assert cut.tolist() == [[14, 15, EOS, PAD], [11, 12, 13, 14]]


def test_continue_sampling_emits_pad_for_rows_already_done():
    model = chain()
    src = torch.tensor([[5], [8], [11]])
    state = model.start(src, None)
    logits = model.step(state, torch.full((3, 1), BOS))[:, -1]
    done = torch.tensor([False, True, False])
    out = continue_sampling(model, state, logits, 5, temperature=0.0, eos_id=EOS, pad_id=PAD, done=done)
    assert out.tolist() == [[6, 7, 8, 9, 10], [PAD] * 5, [12, 13, 14, 15, EOS]]
    assert not done[0]  # the caller's mask is not modified


def test_temperature_top_k_top_p_shape_the_distribution():
    logits = torch.tensor([0.0, 1.0, 2.0, 3.0, -1.0, -1.0])
    table = torch.zeros(6, 6)
    table[BOS] = logits
    model = Bigram(table)
    n = 40000

    def freq(**kw):
        out = sample(model, None, None, max_len=1, batch_size=n, eos_id=None,
                     generator=torch.Generator().manual_seed(1), **kw)
        return torch.bincount(out[:, 0], minlength=6).float() / n

    assert torch.allclose(freq(temperature=2.0), torch.softmax(logits / 2, -1), atol=0.01)
    top2 = torch.softmax(torch.tensor([2.0, 3.0]), -1)
    assert torch.allclose(freq(top_k=2), torch.tensor([0, 0, top2[0], top2[1], 0, 0]), atol=0.01)
    p = torch.softmax(logits, -1)  # sorted: 0.63, 0.23, 0.09, ...; top_p 0.8 keeps the first two
    kept = freq(top_p=0.8)
    assert kept[[0, 4, 5]].sum() == 0 and torch.allclose(kept[2:4], p[2:4] / p[2:4].sum(), atol=0.01)


def test_beam_search_finds_the_sequence_greedy_misses():
    # bos -> A (0.6) or B (0.4); A -> ten tokens evenly; B -> C almost surely
    A, B, C, V = 4, 5, 6, 20
    table = torch.full((V, V), -30.0)
    table[BOS, A], table[BOS, B] = torch.tensor([0.6, 0.4]).log()
    table[A, 10:20] = 0.0
    table[B, C] = 0.0
    table[C, EOS] = 0.0
    model = Bigram(table)
    greedy = sample(model, None, None, max_len=2, batch_size=1, strategy="greedy", eos_id=None)
    assert greedy[0, 0] == A
    beam = sample(model, None, None, max_len=2, batch_size=1, strategy="beam", num_beams=2, eos_id=None)
    assert beam.tolist() == [[B, C]]
    with_eos = sample(model, None, None, max_len=5, batch_size=1, strategy="beam", num_beams=3)
    assert with_eos.tolist() == [[B, C, EOS]]


def test_pad_and_bos_are_never_sampled_in_text_and_may_be_without_eos():
    """A response holds no pad or bos: a sampled pad was later taken for padding (dropped from the
    row's end, so the beam's best hypothesis lost its last token) and a bos read as a new start."""
    V, n = 8, 2000
    table = torch.full((V, V), -2.0)
    table[:, PAD] = table[:, BOS] = 3.0  # the model's favourites
    table[:, EOS] = 0.0
    model = Bigram(table)
    kinds = [dict(strategy="greedy"), dict(strategy="beam", num_beams=3),
             dict(temperature=1.0, generator=torch.Generator().manual_seed(0))]
    for kw in kinds:
        out = sample(model, None, None, max_len=6, batch_size=n, **kw)
        ended = torch.cumsum((out == EOS).long(), 1) - (out == EOS).long() > 0  # positions after eos
        assert not ((out == PAD) | (out == BOS))[~ended].any(), kw
    free = sample(model, None, None, max_len=6, batch_size=n, eos_id=None, generator=torch.Generator().manual_seed(0))
    assert (free == PAD).any() and (free == BOS).any()  # the oracle's ids are all plain tokens
    # the reference rollout forbids them too, and the fast one agrees with it
    from seqgan.training.rollout import naive_rollout_rewards, rollout_rewards

    seqs = sample(model, None, None, max_len=4, batch_size=3, strategy="greedy")

    def reward(src, src_mask, y, mask):
        return ((y == PAD) | (y == BOS)).float().mul(mask).sum(1)  # counts forbidden tokens inside rows

    fast = rollout_rewards(model, reward, None, None, seqs, num_rollouts=2, max_len=4, bos_id=BOS, eos_id=EOS,
                           pad_id=PAD, temperature=0.0)
    slow = naive_rollout_rewards(model, reward, None, None, seqs, num_rollouts=2, max_len=4, bos_id=BOS,
                                 eos_id=EOS, pad_id=PAD, temperature=0.0)
    assert torch.equal(fast, slow) and not fast.any()


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="strategy"):
        sample(chain(), None, None, max_len=3, batch_size=1, strategy="nucleus")
    with pytest.raises(ValueError, match="num_beams"):
        sample(chain(), None, None, max_len=3, batch_size=1, strategy="beam", num_beams=0)


def test_filter_logits():
    x = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert torch.isinf(filter_logits(x, top_k=2)).tolist() == [[True, False, False, True]]
    p = torch.softmax(x, -1)[0]  # 0.087, 0.644, 0.237, 0.032
    kept = ~torch.isinf(filter_logits(x, top_p=0.7))
    assert kept.tolist() == [[False, True, True, False]] and p[1] < 0.7
    assert (~torch.isinf(filter_logits(x, top_p=0.5))).sum() == 1
    assert torch.equal(filter_logits(x), x)


def test_inverse_cdf_sampling_matches_probabilities_and_skips_zeros():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.3, 0.2]]).expand(40000, -1)
    idx = inverse_cdf_sample(probs, torch.Generator().manual_seed(0))
    freq = torch.bincount(idx, minlength=5).float() / len(idx)
    assert freq[0] == 0 and freq[2] == 0
    assert torch.allclose(freq, probs[0], atol=0.01)


# --- on the Transformer generator ---------------------------------------------------------

V = 40


def make(seed=0, std=0.0) -> TransformerGenerator:
    """A small generator; std > 0 redraws its matrices N(0, std) for peaked, non-uniform outputs."""
    torch.manual_seed(seed)
    cfg = GeneratorConfig(vocab_size=V, embed_dim=16, hidden_dim=32, ff_dim=64, num_layers=2, num_heads=4,
                          dropout=0.0, max_len=24)
    gen = TransformerGenerator(cfg).eval()
    if std > 0:
        with torch.no_grad():
            for p in gen.parameters():
                if p.dim() == 2:
                    p.normal_(0, std)
    return gen


def contexts(seed=0, B=4, S=7):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (B, S), generator=g)
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[0, 4:] = False
    src[0, 4:] = PAD
    return src, mask


def test_beam_search_keeps_a_finished_hypothesis_that_open_ones_push_out():
    # bos -> A (0.9), eos (0.09); A -> B or C (0.5 each), both then wander over twenty tokens: the
    # two open beams [A, B], [A, C] push the finished [eos] (-2.41) out of the beam at step 2, and
    # every hypothesis they lead to ends worse than it, by sum / length (-2.48 at best) as by sum
    A, B, C, V = 4, 5, 6, 40
    table = torch.full((V, V), -30.0)
    table[BOS, A], table[BOS, EOS], table[BOS, 7] = torch.tensor([0.9, 0.09, 0.01]).log()
    table[A, B], table[A, C] = torch.tensor([0.5, 0.5]).log()
    table[B:C + 1, 10:30] = torch.tensor(0.05).log()
    table[10:30, 10:30] = torch.tensor((1 - 1e-4) / 20).log()
    table[10:30, EOS] = torch.tensor(1e-4).log()
    for penalty in (0.0, 1.0):
        out = beam_search(Bigram(table), None, None, max_len=10, num_beams=2, batch_size=1, length_penalty=penalty)
        assert out.tolist() == [[EOS]]


@pytest.mark.parametrize("penalty", [0.0, 0.5, 1.0, 2.0])
def test_a_beam_as_wide_as_every_hypothesis_finds_the_exhaustive_search_best(penalty):
    """Every sequence that ends in eos within max_len, or reaches max_len, scored by sum log-prob /
    length ** penalty: the beam (with its finished pool and its early stop) returns the best."""
    import itertools

    V, max_len = 7, 4
    g = torch.Generator().manual_seed(int(penalty * 10))
    for _ in range(10):
        table = torch.randn(V, V, generator=g) * 2
        model = Bigram(table)
        logp = torch.log_softmax(table, -1)  # pad and bos are never chosen (not renormalised away)
        best, best_seq = float("-inf"), None
        content = [t for t in range(V) if t not in (PAD, BOS, EOS)]
        for n in range(1, max_len + 1):
            for body in itertools.product(content, repeat=n - 1):
                for last in ([EOS] + (content if n == max_len else [])):
                    seq = [*body, last]
                    score = sum(float(logp[p, t]) for p, t in zip([BOS, *seq[:-1]], seq, strict=True)) / n ** penalty
                    if score > best + 1e-9:
                        best, best_seq = score, seq
        out = beam_search(model, None, None, max_len=max_len, num_beams=(V - 2) ** max_len, batch_size=1,
                          length_penalty=penalty)
        assert out[0].tolist() == best_seq


def test_top_k_1_low_temperature_and_one_beam_equal_greedy_and_seeds_reproduce():
    gen = make(seed=2)
    src, mask = contexts(1)
    greedy = sample(gen, src, mask, max_len=8, strategy="greedy", eos_id=None)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(sample(gen, src, mask, max_len=8, top_k=1, eos_id=None, generator=g), greedy)
    assert torch.equal(sample(gen, src, mask, max_len=8, temperature=1e-4, eos_id=None, generator=g), greedy)
    assert torch.equal(sample(gen, src, mask, max_len=8, temperature=0.0, eos_id=None), greedy)
    assert torch.equal(sample(gen, src, mask, max_len=8, strategy="beam", num_beams=1, eos_id=None), greedy)
    a = sample(gen, src, mask, max_len=8, generator=torch.Generator().manual_seed(5), eos_id=None)
    b = sample(gen, src, mask, max_len=8, generator=torch.Generator().manual_seed(5), eos_id=None)
    assert torch.equal(a, b)
    c = sample(gen, src, mask, max_len=8, generator=torch.Generator().manual_seed(6), eos_id=None)
    assert not torch.equal(a, c)


def test_a_row_decodes_the_same_alone_and_in_a_padded_batch():
    gen = make(seed=3)
    src, mask = contexts(2)
    batched = sample(gen, src, mask, max_len=10, strategy="greedy", eos_id=None)
    alone = sample(gen, src[:1, :4], None, max_len=10, strategy="greedy", eos_id=None)
    assert torch.equal(batched[:1], alone)
    beams = beam_search(gen, src, mask, max_len=6, num_beams=3, eos_id=None)
    assert torch.equal(beams[:1], beam_search(gen, src[:1, :4], None, max_len=6, num_beams=3, eos_id=None))


def test_eos_stops_transformer_rows_and_compaction_changes_nothing():
    gen = make(seed=3)
    with torch.no_grad():
        gen.out_bias[EOS] = 3.0  # make eos likely
    src, mask = contexts(2, B=16)
    out = sample(gen, src, mask, max_len=12, generator=torch.Generator().manual_seed(0))
    for row in out.tolist():
        if EOS in row:
            assert all(t == PAD for t in row[row.index(EOS) + 1 :])
    assert (out == EOS).any() and (out[:, -1] != PAD).any()  # trimmed to the longest row

    peaked = make(seed=3, std=0.2)
    with torch.no_grad():
        peaked.out_bias[EOS] = 1.5  # greedy rows end after 4, 6 or 12 tokens

    def greedy(min_rows):  # dropping finished rows from the batch must not change any row
        state = peaked.start(src, mask)
        logits = peaked.step(state, torch.full((16, 1), BOS))[:, -1]
        return continue_sampling(peaked, state, logits, 12, temperature=0.0, compact_min_rows=min_rows)

    compacted = greedy(1)
    lengths = (compacted != PAD).sum(1)
    assert lengths.min() < 8 and (lengths < 8).sum() >= 8 and lengths.max() == 12  # compaction happened
    assert torch.equal(compacted, greedy(10**6))


def test_beam_search_finds_higher_likelihood_than_greedy():
    gen = make(seed=4, std=0.3)  # peaked: greedy is often not the best sequence
    src, mask = contexts(3, B=16)

    def seq_logp(seqs):
        lp = torch.log_softmax(gen(src, mask, shift_right(seqs, BOS)), -1).gather(-1, seqs[..., None]).squeeze(-1)
        return lp.sum(1)

    greedy = sample(gen, src, mask, max_len=6, strategy="greedy", eos_id=None)
    beam = beam_search(gen, src, mask, max_len=6, num_beams=5, eos_id=None)
    assert (seq_logp(beam) >= seq_logp(greedy) - 1e-5).all()
    assert (seq_logp(beam) > seq_logp(greedy) + 1e-6).any()


def test_two_level_inverse_cdf_matches_probabilities_on_a_large_vocabulary():
    g = torch.Generator().manual_seed(1)
    V = 5000
    probs = torch.softmax(torch.randn(V, generator=g) * 3, -1)
    probs[::7] = 0.0  # zeros everywhere, whole empty blocks at the end
    probs[-300:] = 0.0
    probs = probs / probs.sum()
    rows = probs.expand(200_000, -1)
    idx = inverse_cdf_sample(rows, torch.Generator().manual_seed(0))
    freq = torch.bincount(idx, minlength=V).float() / len(idx)
    assert (freq[probs == 0] == 0).all()
    top = probs.argsort(descending=True)[:20]
    assert torch.allclose(freq[top], probs[top], atol=0.004)
    # the same draw u picks the same index as a flat search over the whole row
    u = torch.rand(1000, generator=g)
    flat = torch.searchsorted(probs.cumsum(-1).expand(1000, -1).contiguous(), (u * probs.sum())[:, None],
                             right=True).squeeze(1)
    assert (inverse_cdf_sample(probs.expand(1000, -1), u=u) == flat).float().mean() > 0.99


def test_tiny_temperature_and_top_p_behave_as_greedy_instead_of_underflowing():
    """logits / 1e-300 is inf and a top_p of 1e-300 is 0 in float32: both used to give garbage
    (every token dropped, or NaN probabilities); they are raised to the smallest that behave."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 50, generator=g) * 3
    greedy = logits.argmax(-1)
    for kwargs in ({"temperature": 1e-300}, {"temperature": 1e-30}, {"top_p": 1e-300}, {"top_p": 1e-30}):
        assert torch.equal(pick_tokens(logits, generator=torch.Generator().manual_seed(1), **kwargs), greedy), kwargs
