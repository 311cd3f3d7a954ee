"""Model factories: a config in, a module out."""

from __future__ import annotations

from torch import nn

from seqgan.models.discriminator import DiscriminatorConfig
from seqgan.models.generator import GeneratorConfig


def build_generator(cfg: GeneratorConfig) -> nn.Module:
    """A Transformer (encoder-decoder or decoder-only) or LSTM generator."""
    if cfg.vocab_size <= 0:
        raise ValueError("GeneratorConfig.vocab_size must be set (from the tokenizer)")
    if cfg.arch == "lstm":
        from seqgan.models.lstm import LSTMGenerator

        return LSTMGenerator(cfg)
    from seqgan.models.generator import TransformerGenerator

    return TransformerGenerator(cfg)


def build_discriminator(cfg: DiscriminatorConfig) -> nn.Module:
    """A Transformer (conditional or not) or the paper's CNN discriminator."""
    if cfg.vocab_size <= 0:
        raise ValueError("DiscriminatorConfig.vocab_size must be set (from the tokenizer)")
    if cfg.arch == "cnn":
        from seqgan.models.cnn import CNNDiscriminator

        return CNNDiscriminator(cfg)
    from seqgan.models.discriminator import TransformerDiscriminator

    return TransformerDiscriminator(cfg)
