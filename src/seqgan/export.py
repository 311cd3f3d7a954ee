"""Export a trained generator as plain weights: safetensors + a JSON config + the tokenizer.

A checkpoint is for resuming (optimizer, RNG states, pickled containers); an export is for using
the model elsewhere: `model.safetensors` holds tensors only, so loading it can never execute
code, and `config.json` says how to rebuild the module around them.

    out/
      model.safetensors   the generator's state dict
      config.json         {"format", "version", "generator": {...}, "tokenizer_hash", "source"}
      spm.model           the SentencePiece model the ids refer to
      spm.vocab           its pieces and scores, for reading (when the run has it)
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from seqgan import __version__
from seqgan.artifacts import generator_path, load_generator, load_tokenizer
from seqgan.config import Config
from seqgan.data.tokenizer import Tokenizer
from seqgan.errors import CheckpointError, SeqGANError
from seqgan.models import build_generator
from seqgan.models.generator import GeneratorConfig
from seqgan.rundir import RunDir, atomic_write_bytes, atomic_write_text, to_json
from seqgan.training.checkpoint import load_model_state
from seqgan.training.mle import generator_config

FORMAT = "seqgan-export"


def export_generator(cfg: Config, run: RunDir, which: str | None = None, out: str | Path | None = None) -> dict:
    """Write the run's pretrained/adversarial generator (or a checkpoint PATH) to `out`."""
    tokenizer = load_tokenizer(run)
    name, path = generator_path(run, which)
    model, _ = load_generator(cfg, run, tokenizer, torch.device("cpu"), which)
    out = Path(out) if out is not None else run.root / "export" / name
    if out.exists() and not out.is_dir():
        raise SeqGANError(f"--out {out} is a file; give a folder (it is created if missing)")
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "version": __version__,
        "generator": asdict(generator_config(cfg, tokenizer.vocab_size)),
        # how contexts were built in training and the run's sampling defaults
        "data": {k: getattr(cfg.data, k) for k in ("context_turns", "context_separator", "lowercase", "max_len")},
        "sample": asdict(cfg.sample),
        "tokenizer_hash": tokenizer.hash,
        "source": str(path),
    }
    # tensors first, config last: a folder with config.json is complete (a re-export first takes
    # the old one away, so that one cut short never pairs new weights with an old tokenizer)
    (out / "config.json").unlink(missing_ok=True)
    atomic_write_bytes(out / "model.safetensors", save(tensors, metadata={"format": FORMAT}))
    atomic_write_bytes(out / "spm.model", run.spm_model.read_bytes())
    vocab = run.spm_model.with_suffix(".vocab")
    if vocab.exists():
        atomic_write_bytes(out / "spm.vocab", vocab.read_bytes())
    else:  # a run without one (made before it was written): no earlier export's file stays beside this model
        (out / "spm.vocab").unlink(missing_ok=True)
    atomic_write_text(out / "config.json", to_json(meta, indent=2) + "\n")
    return {"generator": name, "path": str(out), "tensors": len(tensors),
            "parameters": sum(t.numel() for t in tensors.values())}


def load_exported(folder: str | Path) -> tuple[nn.Module, Tokenizer, dict]:
    """Rebuild an exported generator (eval mode), its tokenizer and its config.json."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder} is not an exported generator (no config.json)")
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{config_path} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{config_path} is not a seqgan export config")
    try:
        model = build_generator(GeneratorConfig(**meta["generator"]))  # a value of another kind fails here
    except (TypeError, KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{config_path} has an unusable generator config: "
                              f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}") from None
    try:
        tensors = load_file(str(folder / "model.safetensors"))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{folder / 'model.safetensors'} is not readable: {e}") from None
    tokenizer = Tokenizer.load(folder / "spm.model")
    if meta.get("tokenizer_hash") not in (None, tokenizer.hash):
        raise CheckpointError(f"{folder / 'spm.model'} is not the tokenizer the weights were trained with")
    load_model_state(model, tensors, folder / "model.safetensors")
    return model.eval(), tokenizer, meta
