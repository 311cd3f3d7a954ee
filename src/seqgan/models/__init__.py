"""Model factories: a config in, a module out."""

from __future__ import annotations

import torch
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


def token_embedding(model: nn.Module) -> nn.Embedding:
    """The input token table (vocab_size x embed_dim) of any generator or discriminator here."""
    embed = model.embed
    return embed if isinstance(embed, nn.Embedding) else embed.tok


@torch.no_grad()
def copy_token_embeddings(source: nn.Module, target: nn.Module) -> None:
    """Start `target`'s token embeddings from `source`'s (e.g. a discriminator from the pretrained
    generator, which already places tokens that are used alike near each other)."""
    src, dst = token_embedding(source).weight, token_embedding(target).weight
    if src.shape != dst.shape:
        raise ValueError(f"token embeddings differ in shape: {tuple(src.shape)} and {tuple(dst.shape)}")
    dst.copy_(src)
