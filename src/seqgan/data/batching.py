"""Token-budget batches with length bucketing, and collation into padded tensors."""

from __future__ import annotations

import numpy as np
import torch

from seqgan.data.dataset import PairDataset
from seqgan.data.tokenizer import BOS_ID, PAD_ID


def token_budget_batches(lengths: np.ndarray, batch_tokens: int, *, shuffle: bool, seed: int = 0,
                         bucket_size: int = 400, bin_width: int = 4) -> list[np.ndarray]:
    """Index batches whose padded size stays within batch_tokens.

    lengths: (N,) one length per row, or (N, 2) (context, response) lengths, padded separately:
    a batch costs rows x (longest context + longest response). Rows are bucketed by length
    (bins of bin_width tokens in each column) inside chunks of about bucket_size batches, so
    padding is small while batches still differ between epochs; with shuffle the batch order is
    shuffled too. The result is a pure function of (lengths, batch_tokens, seed).
    """
    lengths = np.asarray(lengths)
    cols = lengths.reshape(len(lengths), -1)  # (N, 1) or (N, 2)
    n = len(cols)
    if n == 0:
        return []
    rng = np.random.default_rng(seed)
    order = rng.permutation(n) if shuffle else np.arange(n)
    mean_len = max(1.0, float(cols.sum(1).mean()))
    chunk = max(1, int(bucket_size * batch_tokens / mean_len))
    batches: list[np.ndarray] = []
    for s in range(0, n, chunk):
        part = order[s : s + chunk]
        c = cols[part]
        keys = [c[:, j] for j in reversed(range(c.shape[1]))] + [c[:, j] // bin_width for j in reversed(range(c.shape[1]))]
        part = part[np.lexsort(keys)]
        start = 0
        longest = np.zeros(cols.shape[1], dtype=np.int64)
        for j, i in enumerate(part):
            grown = np.maximum(longest, cols[i])
            if j > start and int(grown.sum()) * (j - start + 1) > batch_tokens:
                batches.append(part[start:j])
                start, grown = j, cols[i].astype(np.int64)
            longest = grown
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
