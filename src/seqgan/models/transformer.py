"""Pre-LN Transformer building blocks on `F.scaled_dot_product_attention`, with a key/value cache.

Cross-layer parameter sharing (ALBERT, and the original project): a `Stack` holds one layer and
applies it `num_layers` times, or holds `num_layers` distinct layers. Each application keeps its
own self-attention cache slot (the weights are shared, the activations are not); the encoder
memory's cross-attention keys/values depend only on the weights and the memory, so applications
of one shared layer share a single `CrossMemory`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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


def scaled_init_(module: nn.Module, num_layers: int) -> None:
    """Scale residual output projections by 1/sqrt(2 * num_layers) (GPT-2) for a stable deep start."""
    for name, p in module.named_parameters():
        if name.endswith("out.weight") or name.endswith("down.weight"):
            with torch.no_grad():
                p.mul_(1 / math.sqrt(2 * num_layers))


def num_params(module: nn.Module) -> int:
    """Number of parameters; a shared layer counts once."""
    return sum(p.numel() for p in module.parameters())


def padding_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, S) bool, True = token -> (B, 1, 1, S) attention mask.

    A row without any token (an empty context) would make softmax return NaN, which then
    spreads through every later computation of that row; such a row attends to its first
    position alone (a pad), so that what it computes does not depend on the batch's width.
    """
    if mask is None:
        return None
    first = torch.zeros_like(mask)
    first[:, 0] = True
    mask = mask | (first & ~mask.any(-1, keepdim=True))
    return mask[:, None, None, :]


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
        """tokens: ids (B, T) or a distribution over the vocabulary (B, T, V) -> (B, T, H).

        A distribution is multiplied into the embedding table (a soft one-hot), so gradients
        reach it (Gumbel-softmax estimators); one-hot rows give exactly the ids' embeddings.
        """
        T = tokens.shape[1]
        if start + T > self.max_len:
            raise ValueError(f"sequence of {start + T} positions exceeds max_len {self.max_len}")
        x = tokens @ self.tok.weight if tokens.is_floating_point() else self.tok(tokens)  # (B, T, E)
        if self.proj is not None:
            x = self.proj(x)
        x = x + self.pos.weight[start : start + T]
        return self.drop(x)


class Attention(nn.Module):
    """Multi-head attention; self-attention (optionally causal) or cross-attention to a memory."""

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float):
        super().__init__()
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, hidden_dim // num_heads
        self.q = nn.Linear(hidden_dim, hidden_dim)
        self.kv = nn.Linear(hidden_dim, 2 * hidden_dim)
        self.out = nn.Linear(hidden_dim, hidden_dim)
        self.dropout = dropout

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of x (B, T, H), each (B, nh, T, hd)."""
        k, v = self.kv(x).chunk(2, dim=-1)
        return self.heads(k), self.heads(v)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
               causal: bool = False) -> torch.Tensor:
        """Queries (B, nh, T, hd) against keys/values (B, nh, S, hd) -> (B, T, H)."""
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)  # (B, nh, T, hd)
        B, _, T, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(B, T, -1))

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                causal: bool = False) -> torch.Tensor:
        """Self-attention of x (B, T, H), or cross-attention to memory (B, S, H); mask (B, 1, 1, S)."""
        k, v = self.keys_values(x if memory is None else memory)
        return self.attend(self.heads(self.q(x)), k, v, mask, causal)


class FeedForward(nn.Module):
    """Linear -> GELU -> Linear, with dropout on the output."""

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
        """x (B, S, H), mask (B, 1, 1, S) from `padding_mask` -> (B, S, H)."""
        x = x + self.drop(self.attn(self.ln1(x), mask=mask))
        return x + self.ff(self.ln2(x))


class CrossMemory:
    """The encoder memory as one cross-attention layer sees it: keys/values computed once."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None):
        self.keys, self.values, self.mask = keys, values, mask  # (B, nh, S, hd), (B, 1, 1, S)

    def select(self, index: torch.Tensor) -> CrossMemory:
        mask = None if self.mask is None else self.mask.index_select(0, index)
        return CrossMemory(self.keys.index_select(0, index), self.values.index_select(0, index), mask)


class LayerCache:
    """Self-attention keys/values of one decoder layer application, preallocated to `capacity`.

    Writing each step into a preallocated buffer avoids re-copying the whole prefix per token
    (torch.cat); `select` copies only the positions filled so far.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int, memory: CrossMemory | None = None):
        self.keys, self.values, self.length = keys, values, length  # (B, nh, capacity, hd)
        self.memory = memory

    @classmethod
    def empty(cls, batch_size: int, num_heads: int, capacity: int, head_dim: int, like: torch.Tensor,
              memory: CrossMemory | None = None) -> LayerCache:
        """An empty cache with the dtype and device of `like`."""
        shape = (batch_size, num_heads, capacity, head_dim)
        return cls(like.new_empty(shape), like.new_empty(shape), 0, memory)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Write n new keys/values (B, nh, n, hd); return all keys, values and the mask for the new queries."""
        n = k.shape[2]
        end = self.length + n
        if end > self.keys.shape[2]:
            raise ValueError(f"decoding past max_len {self.keys.shape[2]}")
        self.keys[:, :, self.length : end] = k
        self.values[:, :, self.length : end] = v
        mask = None  # one new query sees the whole prefix
        if n > 1:  # new position j sees the prefix and the new positions <= j
            rows = torch.arange(n, device=k.device)[:, None] + self.length
            mask = torch.arange(end, device=k.device)[None, :] <= rows  # (n, end)
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end], mask

    def select(self, index: torch.Tensor, memory: CrossMemory | None) -> LayerCache:
        """Rows `index` (B',) of the filled positions, with the (already selected) memory."""
        out = LayerCache.empty(len(index), self.keys.shape[1], self.keys.shape[2], self.keys.shape[3], self.keys,
                               memory)
        L = out.length = self.length
        for src, dst in ((self.keys, out.keys), (self.values, out.values)):
            if L == 0:
                continue
            if src.requires_grad:  # out= is not differentiable
                dst[:, :, :L] = src[:, :, :L].index_select(0, index)
            else:  # one copy, straight into the new buffer
                torch.index_select(src[:, :, :L], 0, index, out=dst[:, :, :L])
        return out


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
        """Full-sequence pass (teacher forcing): x (B, T, H), memory (B, S, H) -> (B, T, H)."""
        x = x + self.drop(self.self_attn(self.ln1(x), causal=causal))
        if self.cross_attn is not None:
            x = x + self.drop(self.cross_attn(self.ln2(x), memory, memory_mask))
        return x + self.ff(self.ln3(x))

    def memory(self, memory: torch.Tensor, memory_mask: torch.Tensor | None) -> CrossMemory:
        """Cross-attention keys/values of the encoder memory (B, S, H), for `step`."""
        k, v = self.cross_attn.keys_values(memory)
        return CrossMemory(k, v, memory_mask)

    def step(self, x: torch.Tensor, cache: LayerCache) -> torch.Tensor:
        """k new positions (B, k, H) against the cached prefix; appends their keys/values."""
        h = self.ln1(x)
        a = self.self_attn
        k, v = a.keys_values(h)  # (B, nh, k, hd)
        keys, values, mask = cache.append(k, v)
        x = x + self.drop(a.attend(a.heads(a.q(h)), keys, values, mask))
        if self.cross_attn is not None:
            c, m = self.cross_attn, cache.memory
            x = x + self.drop(c.attend(c.heads(c.q(self.ln2(x))), m.keys, m.values, m.mask))
        return x + self.ff(self.ln3(x))


class Stack(nn.Module):
    """num_layers applications of one shared layer (ALBERT), or of num_layers distinct layers."""

    def __init__(self, make_layer: Callable[[], nn.Module], num_layers: int, share: bool):
        super().__init__()
        self.num_layers, self.share = num_layers, share
        self.layers = nn.ModuleList([make_layer() for _ in range(1 if share else num_layers)])

    def layer(self, i: int) -> nn.Module:
        """The module of application i (the same one for every i when shared)."""
        return self.layers[0 if self.share else i]

    def applied(self) -> list[nn.Module]:
        """The layer of each application, in order (num_layers entries)."""
        return [self.layer(i) for i in range(self.num_layers)]

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        for layer in self.applied():
            x = layer(x, *args, **kwargs)
        return x
