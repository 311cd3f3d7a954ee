"""Generators: Transformer encoder-decoder (dialogue) and decoder-only (unconditional text)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seqgan.models.transformer import (
    DecoderLayer,
    Embeddings,
    EncoderLayer,
    LayerCache,
    Stack,
    init_weights,
    num_params,
    padding_mask,
    scaled_init_,
)


@dataclass
class GeneratorConfig:
    """Size and shape of a generator. `vocab_size` is filled in from the tokenizer."""

    arch: str = "transformer"  # transformer | lstm
    conditional: bool = True  # encoder-decoder (context -> response) or decoder-only
    vocab_size: int = 0
    embed_dim: int = 128  # < hidden_dim gives a factorized embedding (ALBERT)
    hidden_dim: int = 256
    ff_dim: int = 512
    num_layers: int = 3
    num_heads: int = 8
    dropout: float = 0.1
    max_len: int = 100  # longest sequence (positions) the model accepts
    share_layers: bool = True  # one layer applied num_layers times (ALBERT, the original project)
    tie_embeddings: bool = True  # output projection shares the input embedding


class DecodeState:
    """What incremental decoding carries between steps: one cache per decoder layer application."""

    def __init__(self, caches: list[LayerCache], length: int = 0):
        self.caches, self.length = caches, length

    @property
    def batch_size(self) -> int:
        return self.caches[0].keys.shape[0]

    def select(self, index: torch.Tensor) -> DecodeState:
        """Rows `index` (B',), e.g. each row N times for rollouts, or a beam reordering."""
        return DecodeState([c.select(index) for c in self.caches], self.length)


class TransformerGenerator(nn.Module):
    """Encoder-decoder (context -> response) when cfg.conditional, else decoder-only."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.config = cfg
        H = cfg.hidden_dim
        self.embed = Embeddings(cfg.vocab_size, cfg.embed_dim, H, cfg.max_len, cfg.dropout)
        if cfg.conditional:
            self.encoder = Stack(lambda: EncoderLayer(H, cfg.num_heads, cfg.ff_dim, cfg.dropout), cfg.num_layers,
                                 cfg.share_layers)
            self.enc_norm = nn.LayerNorm(H)
        self.decoder = Stack(lambda: DecoderLayer(H, cfg.num_heads, cfg.ff_dim, cfg.dropout, cfg.conditional),
                             cfg.num_layers, cfg.share_layers)
        self.dec_norm = nn.LayerNorm(H)
        # output: hidden -> (embed ->) vocab; tied to the token embedding when asked
        self.out_proj = nn.Linear(H, cfg.embed_dim, bias=False) if cfg.embed_dim != H else None
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(cfg.embed_dim, cfg.vocab_size, bias=False)
        self.out_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        init_weights(self)
        scaled_init_(self, cfg.num_layers)

    def num_parameters(self) -> int:
        return num_params(self)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dec_norm(x)
        if self.out_proj is not None:
            x = self.out_proj(x)
        w = self.embed.tok.weight if self.lm_head is None else self.lm_head.weight
        return x @ w.T + self.out_bias  # (B, T, V)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.embed(src)  # (B, S, H)
        mask = padding_mask(src_mask)
        for i in range(self.encoder.num_layers):
            x = self.encoder.layer(i)(x, mask)
        return self.enc_norm(x)

    def forward(self, src: torch.Tensor | None, src_mask: torch.Tensor | None, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits (B, T, V) of the next token at every position of tgt_in."""
        memory = self.encode(src, src_mask) if self.config.conditional else None
        mem_mask = padding_mask(src_mask) if self.config.conditional else None
        x = self.embed(tgt_in)
        for i in range(self.decoder.num_layers):
            x = self.decoder.layer(i)(x, memory, mem_mask)
        return self.logits(x)

    def start(self, src: torch.Tensor | None, src_mask: torch.Tensor | None,
              batch_size: int | None = None) -> DecodeState:
        """Encode the context once and allocate the key/value caches."""
        cfg = self.config
        B = src.shape[0] if src is not None else batch_size
        if B is None:
            raise ValueError("start() needs src or batch_size")
        ref = self.embed.tok.weight
        nh, hd = cfg.num_heads, cfg.hidden_dim // cfg.num_heads
        memory = self.encode(src, src_mask) if cfg.conditional else None
        caches = []
        for i in range(self.decoder.num_layers):
            keys = ref.new_zeros(B, nh, cfg.max_len, hd)
            values = ref.new_zeros(B, nh, cfg.max_len, hd)
            ck = cv = None
            if cfg.conditional:
                ck, cv = self.decoder.layer(i).cross_attn.keys_values(memory)  # (B, nh, S, hd)
            caches.append(LayerCache(keys, values, 0, ck, cv, padding_mask(src_mask) if cfg.conditional else None))
        return DecodeState(caches)

    def step(self, state: DecodeState, tokens: torch.Tensor) -> torch.Tensor:
        """Feed k new tokens (B, k); returns their next-token logits (B, k, V); updates state."""
        x = self.embed(tokens, start=state.length)
        for i in range(self.decoder.num_layers):
            x = self.decoder.layer(i).step(x, state.caches[i])
        state.length += tokens.shape[1]
        return self.logits(x)
