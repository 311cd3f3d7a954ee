"""Encoded pairs on disk: data/{split}.npz with ragged id arrays, dialogue ids and texts."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from seqgan.data.tokenizer import EOS_ID
from seqgan.errors import DataError
from seqgan.rundir import atomic_write_bytes


def _ragged(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in seqs])
    flat = np.fromiter((t for s in seqs for t in s), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


def encode_pairs(tokenizer, contexts: list[str], responses: list[str], max_len: int
                 ) -> tuple[list[list[int]], list[list[int]]]:
    """Contexts keep their most recent max_len tokens; responses keep max_len-1 tokens + eos."""
    ctx = [ids[-max_len:] for ids in tokenizer.encode_batch(contexts)]
    resp = [ids[: max_len - 1] + [EOS_ID] for ids in tokenizer.encode_batch(responses)]
    return ctx, resp


def save_pairs(path: Path, contexts: list[list[int]], responses: list[list[int]], dialogue_ids: list[int],
               context_texts: list[str], response_texts: list[str]) -> None:
    c_flat, c_off = _ragged(contexts)
    r_flat, r_off = _ragged(responses)
    texts = json.dumps({"contexts": context_texts, "responses": response_texts}, ensure_ascii=False).encode()
    buf = io.BytesIO()
    np.savez(buf, context_ids=c_flat, context_offsets=c_off, response_ids=r_flat, response_offsets=r_off,
             dialogue_ids=np.asarray(dialogue_ids, dtype=np.int64), texts=np.frombuffer(texts, dtype=np.uint8))
    atomic_write_bytes(path, buf.getvalue())


def _check_split(c_ids, c_off, r_ids, r_off, dialogue_ids, texts, vocab_size: int | None) -> None:
    """What a training loop assumes of a split, raised as ValueError (the file is not one prepare wrote)."""
    for name, a in (("context_ids", c_ids), ("context_offsets", c_off), ("response_ids", r_ids),
                    ("response_offsets", r_off), ("dialogue_ids", dialogue_ids)):
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise ValueError(f"{name} is not a vector of integers")
    for ids, off in ((c_ids, c_off), (r_ids, r_off)):
        if len(off) < 2 or off[0] != 0 or off[-1] != len(ids) or (np.diff(off) < 0).any():
            raise ValueError("its offsets do not cut its token ids into pairs")
        if len(ids) and ids.min() < 0:
            raise ValueError("a token id is negative")
        if len(ids) and vocab_size is not None and ids.max() >= vocab_size:
            raise ValueError(f"a token id is {ids.max()}, past the tokenizer's {vocab_size} ids")
    n = len(c_off) - 1
    if len(r_off) - 1 != n or len(dialogue_ids) != n:
        raise ValueError("its contexts, responses and dialogue ids differ in number")
    if not isinstance(texts, dict) or any(len(texts.get(k) or ()) != n for k in ("contexts", "responses")):
        raise ValueError("its texts do not match its pairs")


class PairDataset:
    """Encoded (context, response) pairs of one split."""

    def __init__(self, c_ids, c_off, r_ids, r_off, dialogue_ids, texts: dict):
        self.c_ids, self.c_off, self.r_ids, self.r_off = c_ids, c_off, r_ids, r_off
        self._dialogue_ids = dialogue_ids
        self.texts = texts
        self._lengths = np.stack([np.diff(c_off), np.diff(r_off)], axis=1).astype(np.int64)  # (N, 2)

    @classmethod
    def load(cls, path: str | Path, vocab_size: int | None = None) -> PairDataset:
        """A prepared split; `vocab_size` (the run's tokenizer's) bounds its token ids."""
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path} not found; run 'seqgan prepare' first")
        try:
            with np.load(path, allow_pickle=False) as z:
                texts = json.loads(z["texts"].tobytes().decode())
                arrays = [z[k] for k in ("context_ids", "context_offsets", "response_ids", "response_offsets",
                                         "dialogue_ids")]
            _check_split(*arrays, texts, vocab_size)
            return cls(*arrays, texts)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, RecursionError) as e:
            raise DataError(f"{path} is not a prepared split ({e}); run 'seqgan prepare --force'") from None

    def __len__(self) -> int:
        return len(self.c_off) - 1

    def context(self, i: int) -> np.ndarray:
        return self.c_ids[self.c_off[i] : self.c_off[i + 1]]

    def response(self, i: int) -> np.ndarray:
        return self.r_ids[self.r_off[i] : self.r_off[i + 1]]

    def dialogue_ids(self) -> np.ndarray:
        return self._dialogue_ids

    def dialogue_id(self, i: int) -> int:
        return int(self._dialogue_ids[i])

    def lengths(self) -> np.ndarray:
        """(N, 2): context and response tokens per pair (the batch token budget's units)."""
        return self._lengths

    def context_text(self, i: int) -> str:
        return self.texts["contexts"][i]

    def response_text(self, i: int) -> str:
        return self.texts["responses"][i]
