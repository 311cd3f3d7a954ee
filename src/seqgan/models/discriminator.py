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
    """Context and response encoded by the same shared encoder (both are utterances of one
    language, and sharing halves the parameters), the response attends to the context, masked
    mean pooling over the response, an MLP, one logit. Unconditional: the response alone."""

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
        return num_params(self)

    def encode(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = self.embed(x)
        m = padding_mask(mask)
        for i in range(self.encoder.num_layers):
            h = self.encoder.layer(i)(h, m)
        return self.norm(h)

    def forward(self, ctx: torch.Tensor | None, ctx_mask: torch.Tensor | None, resp: torch.Tensor,
                resp_mask: torch.Tensor) -> torch.Tensor:
        """resp: ids (B, T) or a distribution over the vocabulary per position (B, T, V) -> logits (B,)."""
        resp = resp[:, : self.config.max_len]
        resp_mask = resp_mask[:, : self.config.max_len]
        h = self.encode(resp, resp_mask)  # (B, T, H)
        if self.cross is None:
            return self.head(masked_mean(h, resp_mask)).squeeze(-1)
        ctx, ctx_mask = ctx[:, -self.config.max_len :], ctx_mask[:, -self.config.max_len :]
        memory = self.encode(ctx, ctx_mask)  # (B, S, H)
        h = self.cross(h, memory, padding_mask(ctx_mask))
        r, c = masked_mean(h, resp_mask), masked_mean(memory, ctx_mask)  # (B, H)
        return self.head(torch.cat([r, c, r * c, (r - c).abs()], dim=-1)).squeeze(-1)


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real positions: (B, T, H), (B, T) -> (B, H)."""
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


def bce_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """BCE-with-logits against 1 (real) / 0 (generated), optionally smoothed towards 0.5."""
    return F.binary_cross_entropy_with_logits(logits, labels * (1 - smoothing) + 0.5 * smoothing)
