"""Sample a response for every context of a split (negatives for D, evaluation, `seqgan generate`)."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from seqgan import distributed
from seqgan.config import SampleConfig
from seqgan.data.dataset import PairDataset
from seqgan.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from seqgan.models.noise import RowNoise, draw_seed
from seqgan.models.sampling import sample


def pad_batch(seqs: list[np.ndarray], pad_id: int = PAD_ID, min_len: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad variable-length id arrays; returns (ids (B, L), mask (B, L)) with mask True = token.

    The mask comes from the lengths, not from the pad value: in the oracle benchmark every id,
    the pad id included, is an ordinary token.
    """
    lengths = torch.as_tensor([len(s) for s in seqs], dtype=torch.long)
    L = max(min_len, int(lengths.max()) if len(seqs) else 0)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, : len(s)] = torch.as_tensor(np.asarray(s), dtype=torch.long)
    return ids, torch.arange(L)[None, :] < lengths[:, None]


def strip_tokens(tokens: torch.Tensor, eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> list[np.ndarray]:
    """(B, T) sampled ids -> list of arrays, each cut after its first eos (eos kept), pad dropped."""
    out = []
    for row in tokens.cpu().numpy():
        hits = np.nonzero(row == eos_id)[0]
        row = row[: hits[0] + 1] if len(hits) else row[row != pad_id]
        out.append(row.astype(np.int32))
    return out


def content_tokens(response: np.ndarray, eos_id: int = EOS_ID) -> list[int]:
    """A response's ids without its eos: what distinct-2 during training counts (evaluate counts words)."""
    return [int(t) for t in response if t != eos_id]


@torch.no_grad()
def generate_responses(gen: nn.Module, contexts: list[np.ndarray], opts: SampleConfig, device: torch.device,
                       generator: torch.Generator | None = None, progress: bool = False,
                       desc: str = "generate") -> list[np.ndarray]:
    """One sampled response per context, batched by similar context length; order preserved.

    Context i is sampled with noise keyed by i under one seed drawn from `generator`, so the
    responses do not depend on the batching; in a distributed run each rank samples a share and
    every rank gets all responses.
    """
    world = distributed.current()
    was_training = gen.training
    gen.eval()
    seed = draw_seed(generator)
    mine = world.part(np.arange(len(contexts)))
    order = mine[np.argsort([len(contexts[i]) for i in mine], kind="stable")]
    out: dict[int, np.ndarray] = {}
    bar = tqdm(total=len(order), desc=desc, unit="sample", disable=not progress, leave=False, dynamic_ncols=True)
    started = time.monotonic()
    for start in range(0, len(order), opts.batch_size):
        idx = order[start : start + opts.batch_size]
        src, src_mask = pad_batch([contexts[i] for i in idx])
        tokens = sample(gen, src.to(device), src_mask.to(device), max_len=opts.max_len, strategy=opts.strategy,
                        temperature=opts.temperature, top_k=opts.top_k, top_p=opts.top_p,
                        num_beams=opts.num_beams, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID,
                        noise=RowNoise(seed, torch.as_tensor(idx, device=device)))
        for i, resp in zip(idx, strip_tokens(tokens), strict=True):
            out[int(i)] = resp
        bar.update(len(idx))
        bar.set_postfix(samples_s=f"{bar.n / max(time.monotonic() - started, 1e-9):,.0f}")
    bar.close()
    gen.train(was_training)
    for part in world.gather(out):  # every rank's share (this rank's alone in a world of one)
        out.update(part)
    return [out[i] for i in range(len(contexts))]


def contexts_of(data: PairDataset, indices: np.ndarray | None = None) -> list[np.ndarray]:
    idx = range(len(data)) if indices is None else indices
    return [data.context(int(i)) for i in idx]
