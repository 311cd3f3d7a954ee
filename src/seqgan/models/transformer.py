"""Pre-LN Transformer building blocks on `F.scaled_dot_product_attention`, with a key/value cache.

Cross-layer parameter sharing (ALBERT, and the original project): a `Stack` holds one layer and
applies it `num_layers` times, or holds `num_layers` distinct layers. Each application keeps its
own cache slot: the weights are shared, the activations are not.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """GPT-2 style init: N(0, std) for weights, zeros for biases, ones for norms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Embeddings(nn.Module):
    """Token embedding (embed_dim), projected to hidden_dim when factorized, plus learned positions."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, max_len: int, dropout: float):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, embed_dim)
        self.proj = nn.Linear(embed_dim, hidden_dim, bias=False) if embed_dim != hidden_dim else None
        self.pos = nn.Embedding(max_len, hidden_dim)
        self.drop = nn.Dropout(dropout)
        self.max_len = max_len

    def forward(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """tokens: ids (B, T) or a distribution over the vocabulary (B, T, V) -> (B, T, H)."""
        T = tokens.shape[1]
        if start + T > self.max_len:
            raise ValueError(f"sequence of {start + T} positions exceeds max_len {self.max_len}")
        x = self.tok(tokens) if tokens.dtype in (torch.long, torch.int32, torch.int64) else tokens @ self.tok.weight
        if self.proj is not None:
            x = self.proj(x)
        x = x + self.pos.weight[start : start + T]
        return self.drop(x)


class Attention(nn.Module):
    """Multi-head attention; self-attention (optionally causal) or cross-attention to a memory."""

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, hidden_dim // num_heads
        self.q = nn.Linear(hidden_dim, hidden_dim)
        self.kv = nn.Linear(hidden_dim, 2 * hidden_dim)
        self.out = nn.Linear(hidden_dim, hidden_dim)
        self.dropout = dropout

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(x).chunk(2, dim=-1)
        return self.heads(k), self.heads(v)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
               causal: bool = False) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)  # (B, nh, T, hd)
        B, _, T, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(B, T, -1))

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                causal: bool = False) -> torch.Tensor:
        k, v = self.keys_values(x if memory is None else memory)
        return self.attend(self.heads(self.q(x)), k, v, mask, causal)


class FeedForward(nn.Module):
    def __init__(self, hidden_dim: int, ff_dim: int, dropout: float):
        super().__init__()
        self.up = nn.Linear(hidden_dim, ff_dim)
        self.down = nn.Linear(ff_dim, hidden_dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.down(F.gelu(self.up(x))))


class EncoderLayer(nn.Module):
    """Pre-LN: x + SelfAttn(LN(x)), then x + FF(LN(x)); bidirectional with a key padding mask."""

    def __init__(self, hidden_dim: int, num_heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(hidden_dim), nn.LayerNorm(hidden_dim)
        self.attn = Attention(hidden_dim, num_heads, dropout)
        self.ff = FeedForward(hidden_dim, ff_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), mask=mask))
        return x + self.ff(self.ln2(x))


class DecoderLayer(nn.Module):
    """Pre-LN causal self-attention, optional cross-attention to the encoder memory, feed-forward."""

    def __init__(self, hidden_dim: int, num_heads: int, ff_dim: int, dropout: float, cross: bool):
        super().__init__()
        self.ln1, self.ln3 = nn.LayerNorm(hidden_dim), nn.LayerNorm(hidden_dim)
        self.self_attn = Attention(hidden_dim, num_heads, dropout)
        self.cross_attn = Attention(hidden_dim, num_heads, dropout) if cross else None
        self.ln2 = nn.LayerNorm(hidden_dim) if cross else None
        self.ff = FeedForward(hidden_dim, ff_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None, memory_mask: torch.Tensor | None,
                causal: bool = True) -> torch.Tensor:
        """Full-sequence pass (teacher forcing)."""
        x = x + self.drop(self.self_attn(self.ln1(x), causal=causal))
        if self.cross_attn is not None:
            x = x + self.drop(self.cross_attn(self.ln2(x), memory, memory_mask))
        return x + self.ff(self.ln3(x))

    def step(self, x: torch.Tensor, cache: LayerCache) -> torch.Tensor:
        """k new positions (B, k, H) against the cached prefix; appends their keys/values."""
        h = self.ln1(x)
        a = self.self_attn
        k, v = a.keys_values(h)  # (B, nh, k, hd)
        keys, values, mask = cache.append(k, v)
        x = x + self.drop(a.attend(a.heads(a.q(h)), keys, values, mask))
        if self.cross_attn is not None:
            c = self.cross_attn
            x = x + self.drop(c.attend(c.heads(c.q(self.ln2(x))), cache.cross_k, cache.cross_v, cache.memory_mask))
        return x + self.ff(self.ln3(x))


class LayerCache:
    """Keys/values of one decoder layer application, preallocated to max_len positions."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int,
                 cross_k: torch.Tensor | None = None, cross_v: torch.Tensor | None = None,
                 memory_mask: torch.Tensor | None = None):
        self.keys, self.values, self.length = keys, values, length  # (B, nh, max_len, hd)
        self.cross_k, self.cross_v, self.memory_mask = cross_k, cross_v, memory_mask

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        n = k.shape[2]
        end = self.length + n
        if end > self.keys.shape[2]:
            raise ValueError(f"decoding past max_len {self.keys.shape[2]}")
        self.keys[:, :, self.length : end] = k
        self.values[:, :, self.length : end] = v
        mask = None
        if n > 1:  # new position j sees the prefix and new positions <= j
            rows = torch.arange(n, device=k.device)[:, None] + self.length
            mask = torch.arange(end, device=k.device)[None, :] <= rows  # (n, end)
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end], mask

    def select(self, index: torch.Tensor) -> LayerCache:
        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.index_select(0, index)

        return LayerCache(pick(self.keys), pick(self.values), self.length, pick(self.cross_k), pick(self.cross_v),
                          pick(self.memory_mask))


class Stack(nn.Module):
    """num_layers applications of one shared layer, or of num_layers distinct layers."""

    def __init__(self, make_layer, num_layers: int, share: bool):
        super().__init__()
        self.num_layers, self.share = num_layers, share
        self.layers = nn.ModuleList([make_layer() for _ in range(1 if share else num_layers)])

    def layer(self, i: int) -> nn.Module:
        return self.layers[0 if self.share else i]


def padding_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, S) bool, True = token -> (B, 1, 1, S) attention mask."""
    return None if mask is None else mask[:, None, None, :]


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def scaled_init_(module: nn.Module, num_layers: int) -> None:
    """Scale residual output projections by 1/sqrt(2 * num_layers) (GPT-2) for a stable deep start."""
    for name, p in module.named_parameters():
        if name.endswith("out.weight") or name.endswith("down.weight"):
            with torch.no_grad():
                p.mul_(1 / math.sqrt(2 * num_layers))
