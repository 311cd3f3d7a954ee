import math

import pytest
import torch

from seqgan.training.policy import (
    apply_baseline,
    conditional_gumbel,
    entropy,
    kl_to_reference,
    length_mask,
    policy_gradient_loss,
    sequence_lengths,
    shift_right,
    straight_through_gumbel,
    token_log_probs,
)

EULER_GAMMA = 0.5772156649


def test_sequence_lengths_count_up_to_first_eos():
    seqs = torch.tensor([[5, 3, 1, 1], [5, 6, 7, 8], [3, 4, 3, 1]])
    assert sequence_lengths(seqs, eos_id=3).tolist() == [2, 4, 1]
    assert sequence_lengths(seqs, eos_id=None).tolist() == [4, 4, 4]
    assert length_mask(torch.tensor([2, 4, 1]), 4).tolist() == [
        [True, True, False, False], [True, True, True, True], [True, False, False, False]]


def test_shift_right_prepends_bos():
    assert shift_right(torch.tensor([[5, 6, 3]]), bos_id=2).tolist() == [[2, 5, 6]]


def test_policy_gradient_loss_hand_computed_and_masked():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -0.5]], requires_grad=True)
    adv = torch.tensor([[1.0, 0.5, 2.0], [-1.0, 0.0, 4.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    loss = policy_gradient_loss(logp, adv, mask)
    # row 0: -(-1*1 + -2*0.5) = 2; row 1: -(-0.5*-1) = -0.5; mean = 0.75. Masked entries ignored.
    assert math.isclose(loss.item(), 0.75, rel_tol=1e-6)
    loss.backward()
    # d loss / d logp = -adv * mask / B: a positive advantage pushes its log-prob up under descent
    expected = -(adv * mask) / 2
    assert torch.allclose(logp.grad, expected)


def test_policy_gradient_raises_probability_of_rewarded_token():
    logits = torch.zeros(1, 1, 4, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=1.0)
    for _ in range(20):
        logp = torch.log_softmax(logits, -1)
        # token 2 was sampled and rewarded +1; token 1 sampled and penalised -1
        loss = policy_gradient_loss(logp[..., 2], torch.ones(1, 1), torch.ones(1, 1, dtype=torch.bool))
        loss = loss + policy_gradient_loss(logp[..., 1], -torch.ones(1, 1), torch.ones(1, 1, dtype=torch.bool))
        opt.zero_grad()
        loss.backward()
        opt.step()
    p = torch.softmax(logits, -1)[0, 0]
    assert p[2] > 0.9 and p[1] < 0.01


def test_batch_mean_baseline_is_the_mean_of_the_other_alive_rows():
    rewards = torch.tensor([[1.0, 2.0], [3.0, 9.0]])
    mask = torch.tensor([[True, True], [True, False]])
    adv, _ = apply_baseline(rewards, mask, "batch_mean")
    # position 0: each row against the other; position 1: row 0 alone keeps its reward
    assert adv.tolist() == [[-2.0, 2.0], [2.0, 0.0]]
    g = torch.Generator().manual_seed(0)
    rewards = torch.rand(6, 5, generator=g)
    mask = torch.arange(5)[None, :] < torch.tensor([5, 4, 4, 2, 1, 5])[:, None]
    adv, _ = apply_baseline(rewards, mask, "batch_mean")
    alive = mask.sum(0)
    for i in range(6):
        for t in range(5):
            others = [rewards[j, t] for j in range(6) if j != i and mask[j, t]]
            want = 0.0 if not mask[i, t] else rewards[i, t] - (sum(others) / len(others) if others else 0.0)
            assert float(adv[i, t]) == pytest.approx(float(want), abs=1e-6), (i, t, int(alive[t]))
    # the baseline does not depend on the row's own reward: the gradient stays unbiased
    bumped = rewards.clone()
    bumped[2] += 0.5
    adv2, _ = apply_baseline(bumped, mask, "batch_mean")
    assert torch.allclose((adv2 - adv)[2], 0.5 * mask[2].float())


def test_moving_average_baseline_updates():
    rewards = torch.tensor([[1.0, 3.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    adv, running = apply_baseline(rewards, mask, "moving_average", running=None, decay=0.5)
    assert running == 2.0 and adv.tolist() == [[-1.0, 1.0]]  # the first batch: its own mean
    adv, running = apply_baseline(rewards * 2, mask, "moving_average", running=running, decay=0.5)
    assert running == 3.0
    assert adv.tolist() == [[0.0, 4.0]]  # minus the earlier batches' mean (2), not one that holds its own rewards
    adv, _ = apply_baseline(rewards, mask, "none")
    assert adv.tolist() == rewards.tolist()


class FixedLogits(torch.nn.Module):
    """A 'generator' whose next-token logits are fixed per position: (B, T, V) from a table."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table  # (T, V)

    def forward(self, src, src_mask, tgt_in):
        return self.table[: tgt_in.shape[1]].expand(tgt_in.shape[0], -1, -1)


def test_log_probs_with_banned_tokens_are_those_of_the_sampling_policy():
    """The sampler never picks pad or bos: their probability is 0 and the rest renormalise."""
    g = torch.Generator().manual_seed(0)
    table = torch.randn(3, 6, generator=g) * 2
    seqs = torch.tensor([[4, 5, 3], [0, 3, 3]])
    banned = torch.tensor([1, 2])
    logp, full = token_log_probs(FixedLogits(table), None, None, seqs, bos_id=2, temperature=0.5, banned=banned)
    allowed = [0, 3, 4, 5]
    ref = torch.full((3, 6), float("-inf"))
    ref[:, allowed] = torch.log_softmax(table[:, allowed] / 0.5, dim=-1)
    torch.testing.assert_close(full[0][:, allowed], ref[:, allowed])
    assert (full[..., banned].exp() == 0).all()
    torch.testing.assert_close(logp, ref[torch.arange(3), seqs])
    mask = torch.ones_like(seqs, dtype=torch.bool)
    h = entropy(full, mask)
    p = ref[:, allowed].exp()
    torch.testing.assert_close(h, -(p * p.log()).sum(-1).mean())  # finite: 0 log 0 is 0
    assert kl_to_reference(full, full, mask).item() == 0.0
    # without `banned`, every token keeps its share
    _, unbanned = token_log_probs(FixedLogits(table), None, None, seqs, bos_id=2, temperature=0.5)
    torch.testing.assert_close(unbanned[0], torch.log_softmax(table / 0.5, dim=-1))


def test_normalized_advantages_have_unit_scale():
    g = torch.Generator().manual_seed(0)
    rewards = torch.rand(64, 10, generator=g) * 5
    mask = torch.ones(64, 10, dtype=torch.bool)
    adv, _ = apply_baseline(rewards, mask, "none", normalize=True)
    assert abs(adv.mean().item()) < 1e-5 and abs(adv.std().item() - 1) < 1e-3


def test_conditional_gumbel_makes_hard_the_argmax_and_matches_unconditional_law():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0, 0.5])
    n = 40000
    hard = torch.multinomial(torch.softmax(logits, -1), n, replacement=True, generator=g)  # (n,)
    pert = conditional_gumbel(logits.expand(n, 1, 5), hard[:, None], g)[:, 0]  # (n, 5)
    assert torch.equal(pert.argmax(-1), hard)
    # hard ~ softmax and perturbation | hard together are unconditional Gumbel(logits): E = logits + gamma
    assert torch.allclose(pert.mean(0), logits + EULER_GAMMA, atol=0.03)


def test_conditional_gumbel_stays_finite_for_large_logits():
    g = torch.Generator().manual_seed(2)
    logits = torch.tensor([[[150.0, -150.0, 0.0, 149.0]]])
    pert = conditional_gumbel(logits, torch.tensor([[0]]), g)
    assert torch.isfinite(pert).all() and pert.argmax(-1).item() == 0
    assert pert[0, 0, 1] == pytest.approx(-150.0, abs=20)  # far below the top: its own Gumbel, not -inf


def test_straight_through_gumbel_is_one_hot_forward_with_gradient():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 7, generator=g, requires_grad=True)
    hard = torch.randint(0, 7, (2, 3), generator=g)
    y = straight_through_gumbel(logits, hard, tau=1.0, generator=g)
    assert torch.allclose(y, torch.nn.functional.one_hot(hard, 7).float())
    (y * torch.arange(7.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_mismatched_negatives_come_from_other_dialogues(tiny_run):
    import numpy as np

    from seqgan.data.dataset import PairDataset
    from seqgan.rundir import RunDir
    from seqgan.training.discriminator import build_examples, mismatched_indices

    data = PairDataset.load(RunDir(tiny_run).split_path("train"))
    rng = np.random.default_rng(0)
    idx = np.arange(len(data))
    other = mismatched_indices(data, idx, rng)
    assert (data.dialogue_ids()[other] != data.dialogue_ids()[idx]).all()
    fakes = [np.array([5, 3])] * len(idx)
    ex = build_examples(data, idx, fakes, 0.5, rng, max_len=100)
    n = len(idx)
    assert ex.labels[:n].sum() == n and ex.labels[n:].sum() == 0
    mismatched = [k for k in range(n) if not np.array_equal(ex.responses[n + k], fakes[k])]
    assert 0.35 * n < len(mismatched) < 0.65 * n
    for k in mismatched:  # a real response of a pair from another dialogue
        sources = [j for j in range(len(data)) if np.array_equal(data.response(j), ex.responses[n + k])]
        assert any(data.dialogue_id(j) != data.dialogue_id(int(idx[k])) for j in sources)


def test_examples_cut_every_response_where_the_samples_stop(tiny_run):
    """A real response longer than any sample would tell D its label by its length alone."""
    import numpy as np

    from seqgan.data.dataset import PairDataset
    from seqgan.data.tokenizer import EOS_ID
    from seqgan.rundir import RunDir
    from seqgan.training.discriminator import build_examples

    data = PairDataset.load(RunDir(tiny_run).split_path("train"))
    idx = np.arange(len(data))
    lengths = np.array([len(data.response(i)) for i in idx])
    cap = int(np.median(lengths))
    assert (lengths > cap).any() and (lengths <= cap).any()
    fakes = [np.array([5] * cap)] * len(idx)  # samples stopped at the cap: no eos
    ex = build_examples(data, idx, fakes, 0.5, np.random.default_rng(0), max_len=cap)
    assert max(len(r) for r in ex.responses) == cap
    for k, i in enumerate(idx):
        full = data.response(int(i))
        assert np.array_equal(ex.responses[k], full[:cap])  # its start, as a sample would begin
        assert (ex.responses[k][-1] == EOS_ID) == (len(full) <= cap)


def test_a_split_of_one_dialogue_takes_generated_negatives_only(tiny_run):
    """A tiny corpus's valid split can hold one dialogue: mismatching raised a bare ValueError
    (a traceback from `seqgan pretrain discriminator`)."""
    import numpy as np

    from seqgan.data.dataset import PairDataset
    from seqgan.rundir import RunDir
    from seqgan.training.discriminator import build_examples

    data = PairDataset.load(RunDir(tiny_run).split_path("valid"))
    data.dialogue_ids = lambda: np.zeros(len(data), dtype=np.int64)  # every pair from one dialogue
    idx = np.arange(len(data))
    fakes = [np.array([5, 3])] * len(idx)
    ex = build_examples(data, idx, fakes, 0.5, np.random.default_rng(0), max_len=100)
    assert all(np.array_equal(r, f) for r, f in zip(ex.responses[len(idx):], fakes, strict=True))


def test_a_mismatched_negative_is_never_the_pairs_own_reply():
    """A stock reply ("thank you .") recurs across dialogues: as a negative it would be labelled
    fake in one example and real in another."""
    import numpy as np

    from seqgan.training.discriminator import mismatched_indices

    class Pairs:  # 40 dialogues of 3 pairs; every dialogue's second reply is the same stock reply
        replies = [np.array([7, 3]) if i % 3 == 1 else np.array([10 + i, 3]) for i in range(120)]

        def __len__(self):
            return 120

        def dialogue_ids(self):
            return np.arange(120) // 3

        def response(self, i):
            return self.replies[i]

    data = Pairs()
    idx = np.arange(120)
    other = mismatched_indices(data, idx, np.random.default_rng(0))
    assert (data.dialogue_ids()[other] != data.dialogue_ids()[idx]).all()
    assert not any(np.array_equal(data.response(int(o)), data.response(int(i))) for o, i in zip(other, idx, strict=True))
