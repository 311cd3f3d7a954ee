"""Rollout rewards: layout (B, T), agreement with the naive reference, the rollout policy update."""

import torch
from torch import nn

from seqgan.models.generator import GeneratorConfig, TransformerGenerator
from seqgan.training.rollout import naive_rollout_rewards, rollout_rewards, update_rollout_policy


class _State:
    def __init__(self, rows: int):
        self.rows, self.length = rows, 0

    def select(self, index: torch.Tensor) -> "_State":
        s = _State(len(index))
        s.length = self.length
        return s


class ConstantPolicy(nn.Module):
    """Always puts all probability on one token; implements the generator decoding interface."""

    def __init__(self, vocab_size: int, token: int):
        super().__init__()
        self.vocab_size, self.token = vocab_size, token
        self.dummy = nn.Parameter(torch.zeros(1))

    def _logits(self, B: int, k: int) -> torch.Tensor:
        logits = torch.full((B, k, self.vocab_size), -1e4)
        logits[..., self.token] = 0.0
        return logits

    def forward(self, src, src_mask, tgt_in):
        return self._logits(*tgt_in.shape)

    def start(self, src, src_mask, batch_size=None):
        return _State(src.shape[0] if src is not None else batch_size)

    def step(self, state, tokens):
        state.length += tokens.shape[1]
        return self._logits(*tokens.shape)


def layout_reward(src, src_mask, resp, resp_mask):
    """First token / 100 + number of 7s among the real tokens / 1000: identifies row and prefix."""
    sevens = ((resp == 7) & resp_mask).sum(1).float()
    return resp[:, 0].float() / 100 + sevens / 1000


def test_rewards_are_laid_out_by_row_and_position():
    # rows of different lengths (eos = 3), tokens 4..6 so no 7 in any prefix
    seqs = torch.tensor([[4, 5, 6, 3, 1], [5, 3, 1, 1, 1], [6, 4, 4, 5, 6]])
    max_len = 8
    src = torch.tensor([[9], [10], [11]])
    policy = ConstantPolicy(vocab_size=12, token=7)
    rewards = rollout_rewards(policy, layout_reward, src, torch.ones_like(src, dtype=torch.bool), seqs, 3,
                              max_len=max_len, bos_id=2, eos_id=3, pad_id=1)
    lengths = [4, 2, 5]
    expected = torch.zeros(3, 5)
    for b, L in enumerate(lengths):
        for t in range(1, L):  # prefix y_1..y_t completed with 7s up to max_len
            expected[b, t - 1] = seqs[b, 0] / 100 + (max_len - t) / 1000
        expected[b, L - 1] = seqs[b, 0] / 100  # the whole sequence, no rollout
    assert torch.allclose(rewards, expected, atol=1e-6), (rewards, expected)


def test_chunking_does_not_change_rewards():
    seqs = torch.tensor([[4, 5, 6, 3, 1], [5, 3, 1, 1, 1], [6, 4, 4, 5, 6]])
    policy = ConstantPolicy(vocab_size=12, token=7)
    kw = dict(max_len=8, bos_id=2, eos_id=3, pad_id=1)
    a = rollout_rewards(policy, layout_reward, None, None, seqs, 4, chunk_rows=4096, **kw)
    b = rollout_rewards(policy, layout_reward, None, None, seqs, 4, chunk_rows=4, **kw)
    assert torch.equal(a, b)


def _tiny_generator(seed: int = 0) -> TransformerGenerator:
    torch.manual_seed(seed)
    cfg = GeneratorConfig(vocab_size=20, embed_dim=16, hidden_dim=32, ff_dim=64, num_layers=2, num_heads=2,
                          dropout=0.0, max_len=16)
    return TransformerGenerator(cfg).eval()


def test_batched_rollout_matches_naive_with_greedy_rollouts_and_fixed_reward():
    gen = _tiny_generator()
    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, 20, (4, 5), generator=g)
    src_mask = torch.ones_like(src, dtype=torch.bool)
    seqs = torch.randint(4, 20, (4, 6), generator=g)
    seqs[1, 2] = 3  # an early eos: positions after it get no reward
    seqs[1, 3:] = 1
    w = torch.randn(20, generator=g)

    def reward(s, sm, resp, resp_mask):  # deterministic and content-dependent
        return torch.sigmoid((w[resp] * resp_mask).sum(1) / 3)

    kw = dict(max_len=10, bos_id=2, eos_id=3, pad_id=1, temperature=0.0)
    fast = rollout_rewards(gen, reward, src, src_mask, seqs, 2, **kw)
    naive = naive_rollout_rewards(gen, reward, src, src_mask, seqs, 2, **kw)
    assert torch.allclose(fast, naive, atol=1e-5)
    assert (fast[1, 3:] == 0).all() and (fast[1, :3] > 0).all()


def test_sampled_rollouts_agree_with_naive_in_distribution():
    gen = _tiny_generator(1)
    g = torch.Generator().manual_seed(1)
    seqs = torch.randint(4, 20, (2, 4), generator=g)
    src = torch.randint(4, 20, (2, 3), generator=g)
    src_mask = torch.ones_like(src, dtype=torch.bool)

    def reward(s, sm, resp, resp_mask):  # share of even tokens
        return ((resp % 2 == 0) & resp_mask).sum(1).float() / resp_mask.sum(1).clamp(min=1)

    kw = dict(max_len=6, bos_id=2, eos_id=3, pad_id=1)
    fast = rollout_rewards(gen, reward, src, src_mask, seqs, 400, generator=torch.Generator().manual_seed(2), **kw)
    naive = naive_rollout_rewards(gen, reward, src, src_mask, seqs, 400, generator=torch.Generator().manual_seed(3),
                                  **kw)
    # Monte-Carlo means of 400 rollouts each: standard error ~0.015
    assert torch.allclose(fast, naive, atol=0.06)


def test_rollout_policy_trails_generator():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        a.weight.fill_(1.0)
        b.weight.fill_(0.0)
    update_rollout_policy(a, b, 0.8)
    assert torch.allclose(a.weight, torch.full((2, 2), 0.8))
