"""Discriminators: conditional/unconditional Transformer with shared layers."""

from __future__ import annotations

from dataclasses import dataclass, field


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
