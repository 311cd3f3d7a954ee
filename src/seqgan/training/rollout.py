"""Monte-Carlo rollout rewards (SeqGAN) and the rollout policy that trails the generator.

For a sampled sequence Y = y_1..y_L and each prefix length t < L, N rollouts of the rollout
policy complete y_1..y_t to full sequences; Q_t is the mean reward of the completions. The last
token's reward is the reward of Y itself. Rewards come back laid out (B, T): row b, position t-1
holds Q for the prefix y_1..y_t of row b.

The fast path encodes each context once and feeds the sampled sequence to the decoder one token
at a time, so that its key/value cache holds every prefix in turn (each token is fed once, for
all rows); at each prefix the cache is copied N times and all N x (rows alive at t) continuations
are sampled together, in chunks of at most `chunk_rows` rows to bound memory. `naive_rollout_rewards` is the reference
implementations' way (a loop over positions and rollouts, re-running the decoder over the whole
prefix for every token); it exists for tests and the benchmark.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from seqgan.models.noise import RowNoise
from seqgan.models.sampling import continue_sampling, filter_logits, forbid, special_ids
from seqgan.training.policy import length_mask, sequence_lengths

# reward_fn(src, src_mask, responses (B, T), response_mask (B, T)) -> rewards in [0, 1], (B,)
RewardFn = Callable[[torch.Tensor | None, torch.Tensor | None, torch.Tensor, torch.Tensor], torch.Tensor]


def discriminator_reward(disc: nn.Module) -> RewardFn:
    """D(x, y) as a probability of being real (the SeqGAN reward)."""

    def reward(src, src_mask, resp, resp_mask):
        return torch.sigmoid(disc(src, src_mask, resp, resp_mask).float())

    return reward


@torch.no_grad()
def update_rollout_policy(rollout: nn.Module, gen: nn.Module, rate: float) -> None:
    """beta <- rate * beta + (1 - rate) * theta (SeqGAN's delayed copy of the generator)."""
    for b, t in zip(rollout.parameters(), gen.parameters(), strict=True):
        b.mul_(rate).add_(t.detach(), alpha=1 - rate)


def _rows(x: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor | None:
    return None if x is None else x[idx]


@torch.no_grad()
def rollout_rewards(policy: nn.Module, reward_fn: RewardFn, src: torch.Tensor | None, src_mask: torch.Tensor | None,
                    seqs: torch.Tensor, num_rollouts: int, *, max_len: int, bos_id: int, eos_id: int | None,
                    pad_id: int, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                    chunk_rows: int = 4096, generator: torch.Generator | None = None,
                    row_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Token rewards (B, T) for sampled sequences `seqs` (B, T); zero after each row's eos.

    Rollout j of prefix t of row b is sampled with noise keyed by (row_ids[b], j, t) under one
    seed drawn from `generator`: the rewards do not depend on chunking or on how rows are split.
    """
    B, T = seqs.shape
    device = seqs.device
    noise = RowNoise.draw(generator, torch.arange(B, device=device) if row_ids is None else row_ids.to(device))
    lengths = sequence_lengths(seqs, eos_id)  # (B,)
    rewards = torch.zeros(B, T, device=device)
    rows = torch.arange(B, device=device)
    rewards[rows, lengths - 1] = reward_fn(src, src_mask, seqs, length_mask(lengths, T)).float()

    was_training = policy.training
    policy.eval()
    inputs = torch.cat([torch.full((B, 1), bos_id, dtype=seqs.dtype, device=device), seqs], dim=1)  # (B, T+1)
    base = policy.start(src, src_mask, batch_size=B)  # consumes bos, y_1, y_2, ... as t grows
    N = num_rollouts
    per_chunk = max(1, chunk_rows // N)  # sequences per chunk; each brings its N rollouts
    for t in range(1, T):
        alive = torch.nonzero(lengths > t).squeeze(1)  # rows whose token t-1 is not their last
        if alive.numel() == 0:
            break
        next_logits = policy.step(base, inputs[:, base.length : t + 1])[:, -1]  # (B, V) after y_1..y_t
        for c in range(0, alive.numel(), per_chunk):
            part = alive[c : c + per_chunk]
            rep = part.repeat_interleave(N)  # (R,) each row N times
            j = torch.arange(N, device=device).repeat(len(part))  # (R,) rollout number
            state = base.select(rep)  # a copy: the continuations do not touch base
            logits = next_logits[rep]  # (R, V)
            cont = continue_sampling(policy, state, logits, max_len - t, temperature=temperature, top_k=top_k,
                                     top_p=top_p, eos_id=eos_id, pad_id=pad_id, noise=noise.select(rep).fork(j, t),
                                     bos_id=bos_id)
            full = torch.cat([seqs[rep, :t], cont], dim=1)  # (R, max_len)
            mask = length_mask(sequence_lengths(full, eos_id), full.shape[1])
            r = reward_fn(_rows(src, rep), _rows(src_mask, rep), full, mask).float()  # (R,)
            rewards[part, t - 1] = r.view(-1, N).mean(1)
    policy.train(was_training)
    return rewards


@torch.no_grad()
def naive_rollout_rewards(policy: nn.Module, reward_fn: RewardFn, src: torch.Tensor | None,
                          src_mask: torch.Tensor | None, seqs: torch.Tensor, num_rollouts: int, *, max_len: int,
                          bos_id: int, eos_id: int | None, pad_id: int, temperature: float = 1.0,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Reference rollout: loop over positions and rollouts; every token re-runs the whole decoder."""
    B, T = seqs.shape
    lengths = sequence_lengths(seqs, eos_id)
    rewards = torch.zeros(B, T, device=seqs.device)
    rows = torch.arange(B, device=seqs.device)
    rewards[rows, lengths - 1] = reward_fn(src, src_mask, seqs, length_mask(lengths, T)).float()
    was_training = policy.training
    policy.eval()
    bos = torch.full((B, 1), bos_id, dtype=seqs.dtype, device=seqs.device)
    banned = special_ids(pad_id, bos_id, seqs.device) if eos_id is not None else None
    for t in range(1, T):
        total = torch.zeros(B, device=seqs.device)
        for _ in range(num_rollouts):
            y = seqs[:, :t]
            done = (y == eos_id).any(1) if eos_id is not None else torch.zeros(B, dtype=torch.bool)
            while y.shape[1] < max_len:
                logits = policy(src, src_mask, torch.cat([bos, y], dim=1))[:, -1]  # full re-run, no cache
                if banned is not None:
                    logits = forbid(logits, banned)
                if temperature <= 0:
                    nxt = logits.argmax(-1)
                else:
                    probs = torch.softmax(filter_logits(logits / temperature, 0, 1.0), dim=-1)
                    nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
                nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
                if eos_id is not None:
                    done = done | (nxt == eos_id)
                y = torch.cat([y, nxt[:, None]], dim=1)
            total += reward_fn(src, src_mask, y, length_mask(sequence_lengths(y, eos_id), y.shape[1])).float()
        alive = lengths > t
        rewards[:, t - 1] = torch.where(alive, total / num_rollouts, rewards[:, t - 1])
    policy.train(was_training)
    return rewards
