"""Load what a run has produced: tokenizer, generators and discriminators, with clear errors."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from seqgan.config import Config, to_dict
from seqgan.data.tokenizer import Tokenizer
from seqgan.errors import CheckpointError, SeqGANError
from seqgan.models import build_discriminator, build_generator
from seqgan.rundir import RunDir
from seqgan.training.checkpoint import load_checkpoint, load_model_state, restoring
from seqgan.training.discriminator import discriminator_config
from seqgan.training.mle import generator_config

GENERATOR_STAGES = {"pretrained": "generator", "adversarial": "adversarial"}


def load_tokenizer(run: RunDir) -> Tokenizer:
    if not run.spm_model.exists():
        run.check_new_run_allowed()  # an oracle experiment or another folder: 'seqgan prepare' there is refused too
        raise SeqGANError(f"{run.root} has no tokenizer yet; run 'seqgan prepare --run-dir {run.root}' first")
    tokenizer = Tokenizer.load(run.spm_model)
    # the encoded data must come from this tokenizer (prepare swaps the two folders one by one)
    made_with = (run.read_manifest() or {}).get("tokenizer_hash")
    if made_with not in (None, tokenizer.hash):
        raise SeqGANError(f"{run.root}: the prepared data was encoded by another tokenizer than "
                          f"tokenizer/spm.model (an interrupted prepare?); run 'seqgan prepare --force --run-dir "
                          f"{run.root}'")
    return tokenizer


def generator_path(run: RunDir, which: str | None) -> tuple[str, Path]:
    """Resolve pretrained | adversarial | PATH (None: adversarial if present, else pretrained)."""
    if which is None:
        which = "adversarial" if run.checkpoint("adversarial", "best").exists() else "pretrained"
    if which in GENERATOR_STAGES:
        path = run.checkpoint(GENERATOR_STAGES[which], "best")
        if not path.exists():
            hint = "seqgan pretrain generator" if which == "pretrained" else "seqgan train"
            raise SeqGANError(f"{run.root} has no {which} generator yet; run '{hint} --run-dir {run.root}' first")
        return which, path
    if not Path(which).exists():
        raise CheckpointError(f"checkpoint not found: {which} (--checkpoint takes pretrained, adversarial or the path "
                              "of a checkpoint file)")
    return "custom", Path(which)


def load_generator(cfg: Config, run: RunDir, tokenizer: Tokenizer, device: torch.device,
                   which: str | None = None) -> tuple[nn.Module, str]:
    """A generator in eval mode from the run's best pretrained/adversarial checkpoint or a path."""
    name, path = generator_path(run, which)
    ckpt = load_checkpoint(path, tokenizer_hash=tokenizer.hash)
    if "model" not in ckpt:
        raise CheckpointError(f"{path} holds no generator")
    want = generator_config(cfg, tokenizer.vocab_size)
    model = build_generator(want)
    with restoring(path):
        _refuse_another_shape(path, ckpt.get("model_config"), to_dict(want))
        load_model_state(model, ckpt["model"], path)
    return model.to(device).eval(), name


def _refuse_another_shape(path: Path, saved: dict | None, want: dict) -> None:
    """A generator saved with other settings (num_heads, or num_layers of shared layers, change no
    tensor's shape) would load into this run's model and compute something else: refuse it.
    Dropout does not matter here, and the tokenizer hash has settled the vocabulary."""
    if not isinstance(saved, dict):
        return
    differ = [k for k, v in want.items() if k not in ("dropout", "vocab_size") and k in saved and saved[k] != v]
    if differ:
        shown = ", ".join(f"model.generator.{k}={saved[k]!r} (this run: {want[k]!r})" for k in differ)
        raise CheckpointError(f"{path} holds a generator built with {shown}; use it from its own run directory")


def load_discriminator(cfg: Config, run: RunDir, tokenizer: Tokenizer, device: torch.device,
                       which: str = "best") -> tuple[nn.Module, dict]:
    """The pretrained discriminator and its checkpoint (for the optimizer state)."""
    path = run.checkpoint("discriminator", which)
    if not path.exists():
        raise SeqGANError(f"{run.root} has no pretrained discriminator yet; "
                          f"run 'seqgan pretrain discriminator --run-dir {run.root}' first")
    ckpt = load_checkpoint(path, tokenizer_hash=tokenizer.hash)
    model = build_discriminator(discriminator_config(cfg, tokenizer.vocab_size))
    with restoring(path):
        load_model_state(model, ckpt["model"], path)
    return model.to(device), ckpt


def adversarial_discriminator(cfg: Config, run: RunDir, tokenizer: Tokenizer, device: torch.device) -> nn.Module | None:
    """The discriminator at the end of adversarial training, if there is one."""
    path = run.checkpoint("adversarial", "last")
    if not path.exists():
        return None
    ckpt = load_checkpoint(path, tokenizer_hash=tokenizer.hash)
    model = build_discriminator(discriminator_config(cfg, tokenizer.vocab_size))
    with restoring(path):
        load_model_state(model, ckpt["discriminator"], path)
    return model.to(device).eval()
