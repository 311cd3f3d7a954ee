"""Discriminator training: length-bucketed balanced batches, embeddings started from the generator."""


import numpy as np
import pytest
import torch
from support import dialogues, one_line, prepared_copy, run_cli, write_jsonl

from seqgan.config import from_dict, load_config
from seqgan.data.tokenizer import Tokenizer
from seqgan.errors import ConfigError
from seqgan.models import (
    build_discriminator,
    build_generator,
    copy_token_embeddings,
    token_embedding,
)
from seqgan.models.discriminator import DiscriminatorConfig
from seqgan.models.generator import GeneratorConfig
from seqgan.rundir import RunDir
from seqgan.training.discriminator import balanced_batches, pretrain_discriminator


def test_length_buckets_keep_batches_balanced_and_pad_less():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(700), np.zeros(650)]
    lengths = rng.integers(1, 65, size=len(labels))
    r_plain, r_bucketed = np.random.default_rng(1), np.random.default_rng(1)
    plain = balanced_batches(labels, 32, r_plain)
    bucketed = balanced_batches(labels, 32, r_bucketed, lengths)
    assert r_plain.random() == r_bucketed.random()  # the same draws: the caller's stream goes on unchanged
    for batches in (plain, bucketed):
        assert sorted(np.concatenate(batches).tolist()) == list(range(len(labels)))  # each example once
    mixed = [b for b in bucketed if 0 < labels[b].sum() < len(b)]
    assert len(mixed) == 41 and all(labels[b].sum() == len(b) / 2 for b in mixed)  # 650 pairs in halves of 16
    assert sum(len(b) for b in bucketed) - sum(len(b) for b in mixed) == 50  # the positives left over
    padded = [sum(len(b) * lengths[b].max() for b in bs) for bs in (plain, bucketed)]
    assert padded[1] < 0.6 * padded[0]


def test_equal_lengths_leave_the_batches_as_they_were():
    labels = np.r_[np.ones(300), np.zeros(300)]
    plain = balanced_batches(labels, 64, np.random.default_rng(3))
    same = balanced_batches(labels, 64, np.random.default_rng(3), np.full(600, 20))
    assert all(np.array_equal(a, b) for a, b in zip(plain, same, strict=True))


@pytest.mark.parametrize("gen_arch, disc_arch", [("transformer", "transformer"), ("lstm", "cnn")])
def test_copy_token_embeddings_between_architectures(gen_arch, disc_arch):
    torch.manual_seed(0)
    gen = build_generator(GeneratorConfig(arch=gen_arch, vocab_size=50, embed_dim=16, hidden_dim=32, num_heads=2,
                                          max_len=20))
    disc = build_discriminator(DiscriminatorConfig(arch=disc_arch, vocab_size=50, embed_dim=16, hidden_dim=32,
                                                   num_heads=2, max_len=20, filter_sizes=[2], num_filters=[4]))
    assert not torch.equal(token_embedding(gen).weight, token_embedding(disc).weight)
    copy_token_embeddings(gen, disc)
    assert torch.equal(token_embedding(gen).weight, token_embedding(disc).weight)
    token_embedding(disc).weight.data.add_(1.0)  # a copy, not the same tensor
    assert not torch.equal(token_embedding(gen).weight, token_embedding(disc).weight)
    narrow = build_discriminator(DiscriminatorConfig(vocab_size=50, embed_dim=8, hidden_dim=32, num_heads=2))
    with pytest.raises(ValueError, match=r"\(50, 16\) and \(50, 8\)"):
        copy_token_embeddings(gen, narrow)


def test_init_embeddings_needs_equal_widths():
    with pytest.raises(ConfigError, match=r"model.discriminator.embed_dim \(8\) must equal model.generator.embed_dim"):
        load_config("tiny", ["discriminator.init_embeddings=true", "model.discriminator.embed_dim=8"])


@pytest.mark.parametrize("init", [True, False])
def test_pretraining_starts_from_the_generator_embeddings(tiny_run, tmp_path, init):
    run = prepared_copy(tiny_run, tmp_path / "run")
    cfg = from_dict(run.read_config())
    dc = cfg.discriminator
    dc.init_embeddings, dc.rounds, dc.pairs_per_round, dc.lr, dc.weight_decay = init, 1, 64, 1e-12, 0.0
    tok = Tokenizer.load(run.spm_model)
    torch.manual_seed(0)
    gen = build_generator(GeneratorConfig(**{**vars(cfg.model.generator), "vocab_size": tok.vocab_size}))
    pretrain_discriminator(cfg, run, torch.device("cpu"), tok, gen)
    trained = torch.load(run.checkpoint("discriminator", "last"), weights_only=True)["model"]["embed.tok.weight"]
    gap = (trained - token_embedding(gen).weight).abs().max()
    assert gap < 1e-8 if init else gap > 1e-3  # an lr of 1e-12 leaves the start in place


def test_a_cnn_discriminator_that_should_read_the_context_is_refused_before_training(tiny_run):
    """It ignored the context unsaid; a run made with it before stays readable (no config error)."""
    stored = RunDir(tiny_run).read_config()
    stored["model"]["discriminator"]["arch"] = "cnn"
    cfg = from_dict(stored)  # loads: evaluate, chat and export of such a run go on
    with pytest.raises(ConfigError, match="reads no context"):
        pretrain_discriminator(cfg, RunDir(tiny_run), torch.device("cpu"), None, None)


@pytest.mark.parametrize("command", ["run", "prepare"])
def test_a_cnn_discriminator_with_context_is_refused_before_the_generator_trains(tmp_path, capsys, command):
    """Not after the generator's pretraining, in a run whose frozen model section cannot change."""
    corpus = write_jsonl(tmp_path / "c.jsonl", dialogues(20))
    run = tmp_path / "r"
    args = ["--config", "tiny", "--run-dir", run, "data.corpus=jsonl", f"data.path={corpus}"]
    assert run_cli(command, *args, "model.discriminator.arch=cnn") == 2
    assert "reads no context" in one_line(capsys.readouterr().err)
    assert not run.exists()  # nothing prepared, nothing frozen
    assert run_cli("prepare", *args, "model.discriminator.arch=cnn", "model.discriminator.conditional=false") == 0
