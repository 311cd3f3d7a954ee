"""Discriminators: conditional/unconditional Transformer with shared layers."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from seqgan.models.transformer import (
    Attention,
    Embeddings,
    EncoderLayer,
    FeedForward,
    Stack,
    init_weights,
    num_params,
    padding_mask,
)


@dataclass
class DiscriminatorConfig:
    """Size and shape of a discriminator. `vocab_size` is filled in from the tokenizer."""

    arch: str = "transformer"  # transformer | cnn (the SeqGAN paper's)
    conditional: bool = True  # reads the context too; the response attends to it
    vocab_size: int = 0
    embed_dim: int = 128
    hidden_dim: int = 256
    ff_dim: int = 512
    num_layers: int = 3
    num_heads: int = 8
    dropout: float = 0.1
    max_len: int = 100
    share_layers: bool = True
    # CNN (paper) settings
    filter_sizes: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20])
    num_filters: list[int] = field(
        default_factory=lambda: [100, 200, 200, 200, 200, 100, 100, 100, 100, 100, 160, 160]
    )


class CrossBlock(nn.Module):
    """The response attends to the context: x + CrossAttn(LN(x), context), then x + FF(LN(x))."""

    def __init__(self, hidden_dim: int, num_heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(hidden_dim), nn.LayerNorm(hidden_dim)
        self.attn = Attention(hidden_dim, num_heads, dropout)
        self.ff = FeedForward(hidden_dim, ff_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), memory, memory_mask))
        return x + self.ff(self.ln2(x))


class TransformerDiscriminator(nn.Module):
    """Shared-layer encoder, cross-attention from the response to the context, masked mean
    pooling over the response, an MLP, one logit. Unconditional: the response alone.

    Context and response go through the same encoder: both are utterances of one language under
    one tokenizer, so separate encoders would learn the same features twice from the same
    (small) data with twice the parameters; the roles differ after the encoder, where only the
    response attends to the context and the head sees the two poolings asymmetrically.
    """

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.config = cfg
        H = cfg.hidden_dim
        self.embed = Embeddings(cfg.vocab_size, cfg.embed_dim, H, cfg.max_len, cfg.dropout)
        self.encoder = Stack(lambda: EncoderLayer(H, cfg.num_heads, cfg.ff_dim, cfg.dropout), cfg.num_layers,
                             cfg.share_layers)
        self.norm = nn.LayerNorm(H)
        self.cross = CrossBlock(H, cfg.num_heads, cfg.ff_dim, cfg.dropout) if cfg.conditional else None
        # conditional: [r, c, r * c, |r - c|] of the pooled response and context (the matching
        # features of sentence-pair classifiers) make agreement between the two easy to read
        width = 4 * H if cfg.conditional else H
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, H), nn.GELU(), nn.Dropout(cfg.dropout),
                                  nn.Linear(H, 1))
        init_weights(self)

    def num_parameters(self) -> int:
        """Parameters of the module; a shared layer counts once."""
        return num_params(self)

    def encode(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Ids (B, T) or distributions (B, T, V) -> encoded states (B, T, H)."""
        return self.norm(self.encoder(self.embed(x), padding_mask(mask)))

    def forward(self, ctx: torch.Tensor | None, ctx_mask: torch.Tensor | None, resp: torch.Tensor,
                resp_mask: torch.Tensor) -> torch.Tensor:
        """resp: ids (B, T) or a distribution over the vocabulary per position (B, T, V) -> logits (B,)."""
        n = self.config.max_len
        resp, resp_mask = resp[:, :n], resp_mask[:, :n]  # a response is judged by its start
        h = self.encode(resp, resp_mask)  # (B, T, H)
        if self.cross is None:
            return self.head(masked_mean(h, resp_mask)).squeeze(-1)
        if ctx is None or ctx_mask is None:
            raise ValueError("a conditional discriminator needs ctx and ctx_mask")
        ctx, ctx_mask = last_tokens(ctx, ctx_mask, n)  # a context by its most recent tokens
        memory = self.encode(ctx, ctx_mask)  # (B, S, H)
        h = self.cross(h, memory, padding_mask(ctx_mask))
        r, c = masked_mean(h, resp_mask), masked_mean(memory, ctx_mask)  # (B, H)
        return self.head(torch.cat([r, c, r * c, (r - c).abs()], dim=-1)).squeeze(-1)


def last_tokens(x: torch.Tensor, mask: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last n real tokens of right-padded rows x (B, S) and their mask; (B, min(S, n)) each."""
    if x.shape[1] <= n:
        return x, mask
    begin = (mask.sum(1) - n).clamp(min=0)  # (B,)
    idx = begin[:, None] + torch.arange(n, device=x.device)  # (B, n)
    return x.gather(1, idx), mask.gather(1, idx)


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real positions: (B, T, H), (B, T) -> (B, H)."""
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


def bce_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """BCE-with-logits against 1 (real) / 0 (generated), optionally smoothed towards 0.5."""
    return F.binary_cross_entropy_with_logits(logits, labels * (1 - smoothing) + 0.5 * smoothing)
