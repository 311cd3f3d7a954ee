"""Self-describing checkpoints, written atomically and loaded without arbitrary pickle execution.

A checkpoint holds the model, optimizer and scheduler states, the step/epoch counters, the RNG
states, the resolved config, the tokenizer's hash and the package version (STYLE.md item 11).
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqgan import __version__, distributed
from seqgan.errors import CheckpointError, ConfigError
from seqgan.rundir import atomic_write_bytes, main_process
from seqgan.runtime import seed_everything


def refuse_other_batching(saved: dict, now: dict, unit: str) -> None:
    """A resume inside an epoch or round continues at a saved batch position, which counts the
    batches its saved settings cut: refuse settings that cut them otherwise (ConfigError)."""
    changed = {k: v for k, v in saved.items() if now.get(k) != v}
    if changed:
        raise ConfigError(f"the {unit} in progress was batched with "
                          f"{', '.join(f'{k}={v}' for k, v in changed.items())}; pass that to finish it "
                          f"(it may change once the {unit.split()[-1]} ends) or start a new --run-dir")


def rng_state(generator: torch.Generator | None = None) -> dict:
    """All RNG states as tensors and plain values (loadable with weights_only=True).

    In a distributed run this is a collective (every rank calls it at the same point, as every
    rank takes the same checkpoint decisions): it also holds each rank's local states, in rank
    order under "ranks", so that every rank resumes its own dropout stream.
    """
    state = _local_rng_state()
    if generator is not None:
        state["generator"] = generator.get_state()
    world = distributed.current()
    if world.distributed:
        state["ranks"] = world.gather(_local_rng_state())
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    """Restore the states saved by rng_state.

    Rank 0 (and a single process) takes the saved local states; every other rank takes its own
    when the checkpoint holds them for this many ranks. Otherwise (a checkpoint of one process,
    or of another number of them) a rank > 0 reseeds its local streams (dropout) from rank 0's
    state and its rank, so the ranks keep distinct streams. `generator` (the keyed sampling
    noise, the same on every rank) is restored as saved.
    """
    world = distributed.current()
    ranks = state.get("ranks")
    if world.rank > 0 and ranks is not None and len(ranks) == world.size:
        _set_local_rng_state(ranks[world.rank])
    else:
        _set_local_rng_state(state)
        if world.rank > 0:
            seed_everything(distributed.per_rank_seed(int(torch.randint(0, 2**62, (1,))), world))
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


def _local_rng_state() -> dict:
    """This process's own streams: Python's, NumPy's, torch's (and CUDA's)."""
    np_state = np.random.get_state()
    state = {
        "python": _py_state_to_list(random.getstate()),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_local_rng_state(state: dict) -> None:
    random.setstate(_py_state_from_list(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _py_state_to_list(s: tuple) -> list:
    version, internal, gauss = s
    return [version, list(internal), gauss]


def _py_state_from_list(s: list) -> tuple:
    return (s[0], tuple(s[1]), s[2])


def save_checkpoint(path: Path, *, config: dict, tokenizer_hash: str | None, **state: Any) -> None:
    """Write a checkpoint atomically (temp file + fsync + rename); rank 0 alone writes."""
    if not main_process():
        return
    payload = {
        "format": "seqgan-checkpoint",
        "version": __version__,
        "config": config,
        "tokenizer_hash": tokenizer_hash,
        **state,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(path: Path, *, tokenizer_hash: str | None = None, map_location: Any = "cpu",
                    mmap: bool = False) -> dict:
    """Load a checkpoint safely; a missing, corrupt, foreign or mismatched file raises CheckpointError.
    `mmap`: map the tensors instead of reading them (to read a checkpoint's counters only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle means the file is not usable
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {first[:200]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "seqgan-checkpoint":
        raise CheckpointError(f"{path} is not a seqgan checkpoint")
    if tokenizer_hash is not None and ckpt.get("tokenizer_hash") not in (None, tokenizer_hash):
        raise CheckpointError(
            f"{path} was trained with a different tokenizer (hash {str(ckpt.get('tokenizer_hash'))[:12]} "
            f"!= {tokenizer_hash[:12]})"
        )
    return ckpt


@contextmanager
def restoring(path: Path) -> Iterator[None]:
    """Around the reading of a loaded checkpoint's fields: a file with the right tag that lacks a
    field or holds one of another kind (another stage's checkpoint copied here, a hand-edited
    file) raises CheckpointError naming the file, not a traceback."""
    try:
        yield
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as e:
        if isinstance(e, KeyError):
            detail = f"it has no {e.args[0]!r} field" if e.args else "a field is missing"
        else:
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            detail = f"{type(e).__name__}: {lines[0][:200] if lines else 'a field is malformed'}"
        raise CheckpointError(f"{path} is damaged or holds another stage's checkpoint ({detail})") from None


def update_state(state: dict, saved: dict) -> None:
    """`state.update(saved)` for a stage's counters, inside `restoring`: a saved value of another
    kind than the default's (a string for a step count) raises TypeError here, not deep in the loop."""
    for key, value in saved.items():
        default = state.get(key)
        if default is None or value is None or isinstance(value, type(default)):
            continue
        if not (isinstance(default, float) and isinstance(value, int)):  # a float counter may be saved whole
            raise TypeError(f"its state field {key!r} is {value!r}: {type(value).__name__}, not {type(default).__name__}")
    state.update(saved)


def load_model_state(model: torch.nn.Module, state: dict, path: Path) -> None:
    """load_state_dict with a clear error when the shapes do not fit."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise CheckpointError(f"{path} does not fit this model's shape: {detail[:200]}") from None
