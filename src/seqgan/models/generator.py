"""Generators: Transformer encoder-decoder (dialogue) and decoder-only (unconditional text)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seqgan.models.transformer import (
    CrossMemory,
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
    """What incremental decoding carries between steps: one cache per decoder layer application.

    `length` counts the positions consumed so far (bos included).
    """

    def __init__(self, caches: list[LayerCache], length: int = 0):
        self.caches, self.length = caches, length

    @property
    def batch_size(self) -> int:
        return self.caches[0].keys.shape[0]

    def select(self, index: torch.Tensor) -> DecodeState:
        """Rows `index` (B',), e.g. each row N times for rollouts, or a beam reordering."""
        picked: dict[int, CrossMemory] = {}  # a memory shared by several applications is gathered once
        caches = []
        for c in self.caches:
            m = c.memory
            if m is not None and id(m) not in picked:
                picked[id(m)] = m.select(index)
            caches.append(c.select(index, None if m is None else picked[id(m)]))
        return DecodeState(caches, self.length)


class TransformerGenerator(nn.Module):
    """Encoder-decoder (context -> response) when cfg.conditional, else decoder-only.

    Ids in, next-token logits out; position 0 of the decoder input is bos. `forward` is teacher
    forcing over whole sequences; `start` + `step` decode incrementally with a key/value cache
    and give the same logits.
    """

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
        """Parameters of the module; a shared layer counts once."""
        return num_params(self)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder states (B, T, H) -> next-token logits (B, T, V)."""
        x = self.dec_norm(x)
        if self.out_proj is not None:
            x = self.out_proj(x)  # (B, T, E)
        w = self.embed.tok.weight if self.lm_head is None else self.lm_head.weight
        return x @ w.T + self.out_bias

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None) -> torch.Tensor:
        """Context ids (B, S) -> memory (B, S, H)."""
        return self.enc_norm(self.encoder(self.embed(src), padding_mask(src_mask)))

    def decode(self, memory: torch.Tensor | None, src_mask: torch.Tensor | None, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forcing decoder pass over tgt_in (B, T) given an encoded memory -> logits (B, T, V)."""
        return self.logits(self.decoder(self.embed(tgt_in), memory, padding_mask(src_mask)))

    def forward(self, src: torch.Tensor | None, src_mask: torch.Tensor | None, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits (B, T, V) of the next token at every position of tgt_in (B, T)."""
        if not self.config.conditional:
            return self.decode(None, None, tgt_in)
        return self.decode(self.encode(src, src_mask), src_mask, tgt_in)

    def start(self, src: torch.Tensor | None, src_mask: torch.Tensor | None,
              batch_size: int | None = None) -> DecodeState:
        """Encode the context once (B, S) and allocate the key/value caches (decoder-only: batch_size rows)."""
        cfg = self.config
        if cfg.conditional and src is None:
            raise ValueError("a conditional generator needs src to start decoding")
        B = src.shape[0] if src is not None else batch_size
        if B is None:
            raise ValueError("start() needs src or batch_size")
        memories: dict[int, CrossMemory] = {}  # applications of one shared layer share its memory
        if cfg.conditional:
            memory, mask = self.encode(src, src_mask), padding_mask(src_mask)
            for layer in self.decoder.layers:
                memories[id(layer)] = layer.memory(memory, mask)
        nh, hd = cfg.num_heads, cfg.hidden_dim // cfg.num_heads
        like = self.embed.tok.weight
        caches = [LayerCache.empty(B, nh, cfg.max_len, hd, like, memories.get(id(layer)))
                  for layer in self.decoder.applied()]
        return DecodeState(caches)

    def step(self, state: DecodeState, tokens: torch.Tensor) -> torch.Tensor:
        """Feed k new tokens (B, k); returns their next-token logits (B, k, V); updates state in place."""
        x = self.embed(tokens, start=state.length)  # (B, k, H)
        for layer, cache in zip(self.decoder.applied(), state.caches, strict=True):
            x = layer.step(x, cache)
        state.length += tokens.shape[1]
        return self.logits(x)
