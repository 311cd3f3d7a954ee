"""Pure functions of the adversarial objectives: masks, log-probs, baselines, losses.

Shapes: B rows, T positions, V vocabulary. A sampled sequence is its tokens up to and including
the first eos (`lengths` counts them); positions after it are masked out of every loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqgan.models.noise import RowNoise
from seqgan.models.sampling import MIN_TEMPERATURE

BANNED_LOGIT = -1e9  # exp() of it is 0 in float32; a product with 0 stays 0 (-inf would give NaN)


def sequence_lengths(seqs: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """Tokens up to and including the first eos per row; the full width where there is none."""
    B, T = seqs.shape
    if eos_id is None:
        return torch.full((B,), T, dtype=torch.long, device=seqs.device)
    is_eos = seqs == eos_id  # (B, T)
    first = torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full((B,), T - 1, device=seqs.device))
    return first.long() + 1


def length_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool mask, True on real tokens."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def shift_right(seqs: torch.Tensor, bos_id: int) -> torch.Tensor:
    """Teacher-forcing inputs: bos followed by all tokens but the last."""
    bos = torch.full_like(seqs[:, :1], bos_id)
    return torch.cat([bos, seqs[:, :-1]], dim=1)


def token_log_probs(gen: nn.Module, src: torch.Tensor | None, src_mask: torch.Tensor | None,
                    seqs: torch.Tensor, bos_id: int, temperature: float = 1.0, banned: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """log G(y_t | x, y_<t) of the given tokens, and the full log-softmax. ((B, T), (B, T, V))

    `banned`: token ids the sampler never picks (pad and bos in text, `special_ids`); they get
    probability 0 here too, so that these are the log-probs of the policy that sampled. A finite
    floor, not -inf, keeps p log p at 0 in the entropy and KL terms.
    """
    logits = gen(src, src_mask, shift_right(seqs, bos_id)).float() / max(temperature, MIN_TEMPERATURE)  # (B, T, V)
    if banned is not None:
        logits = logits.index_fill(-1, banned, BANNED_LOGIT)
    logp = F.log_softmax(logits, dim=-1)
    return logp.gather(-1, seqs.unsqueeze(-1)).squeeze(-1), logp


def apply_baseline(rewards: torch.Tensor, mask: torch.Tensor, kind: str,
                   running: float | None = None, decay: float = 0.9, normalize: bool = False
                   ) -> tuple[torch.Tensor, float | None]:
    """Advantages (B, T) = rewards - baseline, masked; returns them and the new running mean.

    `batch_mean` subtracts, at each position, the mean reward of the other rows still alive there
    (leave-one-out: a baseline that does not depend on the row's own tokens keeps the gradient
    unbiased; a row alone at a position keeps its reward); `moving_average` subtracts an
    exponential moving average of the mean token reward.
    """
    m = mask.float()
    if kind == "batch_mean":
        total, alive = (rewards * m).sum(0), m.sum(0)  # (T,)
        others = (alive - m).clamp(min=1)  # rows alive besides this one, (B, T)
        adv = torch.where(alive > 1, rewards - (total - rewards * m) / others, rewards)
    elif kind == "moving_average":  # the mean of earlier batches (the first batch: its own)
        mean = float((rewards * m).sum() / m.sum().clamp(min=1))
        adv = rewards - (mean if running is None else running)
        running = mean if running is None else decay * running + (1 - decay) * mean
    elif kind == "none":
        adv = rewards.clone()
    else:
        raise ValueError(f"unknown baseline {kind!r}")
    if normalize:
        n = m.sum().clamp(min=2)
        mu = (adv * m).sum() / n
        std = (((adv - mu) ** 2 * m).sum() / (n - 1)).sqrt()
        adv = (adv - mu) / (std + 1e-8)
    return adv * m, running


def policy_gradient_loss(logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """REINFORCE: -sum_t log G(y_t|..) * A_t over real tokens, averaged over rows.

    The advantages are constants (detached): the gradient flows through the log-probabilities only.
    """
    return -(logp * advantages.detach() * mask.float()).sum(1).mean()


def entropy(logp_full: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean per-token entropy of the policy over real positions. logp_full: (B, T, V)"""
    h = -(logp_full.exp() * logp_full).sum(-1)  # (B, T)
    m = mask.float()
    return (h * m).sum() / m.sum().clamp(min=1)


def kl_to_reference(logp_full: torch.Tensor, ref_logp_full: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean per-token KL(G || G_ref) over real positions (keeps G near the pretrained model)."""
    kl = (logp_full.exp() * (logp_full - ref_logp_full)).sum(-1)  # (B, T)
    m = mask.float()
    return (kl * m).sum() / m.sum().clamp(min=1)


def conditional_gumbel(logits: torch.Tensor, hard: torch.Tensor, generator: torch.Generator | None = None,
                       noise: RowNoise | None = None) -> torch.Tensor:
    """Gumbel-perturbed logits distributed as the perturbation that makes `hard` the argmax.

    Draws the maximum from Gumbel(logsumexp(logits)) and every other coordinate from its Gumbel
    truncated below that maximum (Maddison et al. 2014), so that the relaxed sample
    softmax(perturbed / tau) belongs to the same draw as the discrete token `hard` (B, T).
    Uniforms come from `noise` (keyed per row) when given, else from `generator`.
    """
    logits = logits.float()

    def gumbel(shape, salt):
        if noise is not None:
            u = noise.grid(shape[1:], salt).to(logits.device)
        else:
            u = torch.rand(shape, generator=generator, device="cpu").to(logits.device)
        return -torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-10)))

    top = torch.logsumexp(logits, dim=-1, keepdim=True) + gumbel(logits.shape[:-1] + (1,), 1)  # (B, T, 1)
    others = logits + gumbel(logits.shape, 2)  # (B, T, V)
    truncated = -torch.logaddexp(-top, -others)  # -log(e^-top + e^-others): each < top, no overflow
    return truncated.scatter(-1, hard.unsqueeze(-1), top)


def straight_through_gumbel(logits: torch.Tensor, hard: torch.Tensor, tau: float,
                            generator: torch.Generator | None = None, noise: RowNoise | None = None) -> torch.Tensor:
    """One-hot of `hard` in the forward pass, gradient of softmax(perturbed / tau) backwards. (B, T, V)"""
    perturbed = conditional_gumbel(logits.detach(), hard, generator, noise) - logits.detach() + logits
    soft = F.softmax(perturbed / tau, dim=-1)
    one_hot = F.one_hot(hard, logits.shape[-1]).to(soft.dtype)
    return one_hot - soft.detach() + soft
