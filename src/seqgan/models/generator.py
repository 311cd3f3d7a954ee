"""Generators: Transformer encoder-decoder (dialogue) and decoder-only (unconditional text)."""

from __future__ import annotations

from dataclasses import dataclass


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
