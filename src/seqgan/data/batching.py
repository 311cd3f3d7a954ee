"""Token-budget batches with length bucketing, and collation into padded tensors."""

from __future__ import annotations

import numpy as np
import torch

from seqgan.data.dataset import PairDataset
from seqgan.data.tokenizer import BOS_ID, PAD_ID


def token_budget_batches(lengths: np.ndarray, batch_tokens: int, *, shuffle: bool, seed: int = 0,
                         bucket_size: int = 100) -> list[np.ndarray]:
    """Index batches whose padded size (rows x longest row) stays within batch_tokens.

    With shuffle, indices are shuffled, sorted by length inside buckets of bucket_size batches'
    worth of rows (so padding is small but batches differ between epochs), and the batch order
    is shuffled; the result is a pure function of (lengths, batch_tokens, seed).
    """
    n = len(lengths)
    if n == 0:
        return []
    rng = np.random.default_rng(seed)
    order = rng.permutation(n) if shuffle else np.arange(n)
    mean_len = max(1.0, float(np.mean(lengths)))
    chunk = max(1, int(bucket_size * batch_tokens / mean_len))
    batches: list[np.ndarray] = []
    for s in range(0, n, chunk):
        part = order[s : s + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        start, longest = 0, 0
        for j, i in enumerate(part):
            longest_new = max(longest, int(lengths[i]))
            if j > start and longest_new * (j - start + 1) > batch_tokens:
                batches.append(part[start:j])
                start, longest_new = j, int(lengths[i])
            longest = longest_new
        batches.append(part[start:])
    if shuffle:
        batches = [batches[k] for k in rng.permutation(len(batches))]
    return batches


def shard_batches(batches: list[np.ndarray], rank: int, world_size: int) -> list[np.ndarray]:
    """Every rank gets the same number of batches (the tail that does not divide is dropped)."""
    n = len(batches) // world_size * world_size
    return batches[rank:n:world_size]


def _pad(seqs: list[np.ndarray], pad_id: int, prefix: int | None = None) -> torch.Tensor:
    extra = 0 if prefix is None else 1
    L = max(1, max(len(s) for s in seqs) + extra)
    out = np.full((len(seqs), L), pad_id, dtype=np.int64)
    for r, s in enumerate(seqs):
        if prefix is not None:
            out[r, 0] = prefix
        out[r, extra : extra + len(s)] = s
    return torch.from_numpy(out)


def collate(data: PairDataset, indices: np.ndarray, pad_id: int = PAD_ID, bos_id: int = BOS_ID) -> dict:
    """src (B, S), src_mask, tgt_in (B, T) = bos + response[:-1], tgt_out (B, T) = response, tgt_mask."""
    contexts = [data.context(int(i)) for i in indices]
    responses = [data.response(int(i)) for i in indices]
    src = _pad(contexts, pad_id)
    src_lens = torch.as_tensor([len(c) for c in contexts])
    src_mask = torch.arange(src.shape[1])[None, :] < src_lens[:, None]
    tgt_out = _pad(responses, pad_id)
    tgt_in = _pad([r[:-1] for r in responses], pad_id, prefix=bos_id)[:, : tgt_out.shape[1]]
    tgt_lens = torch.as_tensor([len(r) for r in responses])
    tgt_mask = torch.arange(tgt_out.shape[1])[None, :] < tgt_lens[:, None]
    return {"src": src, "src_mask": src_mask, "tgt_in": tgt_in, "tgt_out": tgt_out, "tgt_mask": tgt_mask}
