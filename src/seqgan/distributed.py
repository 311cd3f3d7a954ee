"""Data parallelism with PyTorch's own engine: `torchrun` + torch.distributed + DDP.

Started by `torchrun --nproc_per_node N -m seqgan ...`, every process reads RANK, WORLD_SIZE and
LOCAL_RANK from the environment and joins one process group (gloo on CPU, nccl on CUDA). Each
training step takes the same global batch on every rank and splits its rows (`part`); losses are
sums over the rank's rows divided by the global count, times the world size, so that DDP's
gradient average equals the single-process gradient of the whole batch. Sampling noise is keyed
by global row index (`models/noise.py`), so a run with N processes draws the same samples as a
run with one. Rank 0 alone writes checkpoints, logs, samples and progress bars.

A plain `seqgan ...` is a world of one: every helper here is then a no-op.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from seqgan.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files and prints progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    # ------------------------------------------------------------------ splitting work
    def part(self, rows: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """This rank's contiguous share of a global batch (sizes differ by at most one)."""
        n = len(rows)
        lo, hi = n * self.rank // self.size, n * (self.rank + 1) // self.size
        return rows[lo:hi]

    def share(self, rows: np.ndarray) -> tuple[np.ndarray, float]:
        """This rank's share of a global batch and its weight: with fewer rows than ranks, an
        empty share joins the step with one row at weight 0 (every rank must run the step)."""
        local = self.part(rows)
        return (local, 1.0) if len(local) else (rows[:1], 0.0)

    # ------------------------------------------------------------------ collectives
    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sum(self, *values: float) -> list[float]:
        """Sum each value over ranks (one all-reduce)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(t)
        return t.tolist()

    def any(self, *flags: bool) -> list[bool]:
        """Each flag, true when it is true on any rank (one all-reduce): decisions every rank takes alike."""
        return [bool(x) for x in self.sum(*flags)]

    def main_decides(self, flag: bool) -> bool:
        """Rank 0's flag on every rank: a decision every rank must take alike (whether to save,
        what is best) from values that could differ in their last bit between ranks."""
        return self.any(self.main and flag)[0]

    def max(self, value: int) -> int:
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self.comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t)

    def gather(self, obj: object) -> list:
        """Every rank's object, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def all_gather_rows(self, x: torch.Tensor, pad_value: float | int = 0) -> torch.Tensor:
        """Concatenate each rank's rows (B_r, T_r, ...) into (sum B_r, max T_r, ...), in rank order."""
        if not self.distributed:
            return x
        width = self.max(x.shape[1])
        if x.shape[1] < width:
            pad = x.new_full((x.shape[0], width - x.shape[1], *x.shape[2:]), pad_value)
            x = torch.cat([x, pad], 1)
        return torch.cat(self.gather(x.cpu()), 0).to(x.device)

    @property
    def comm_device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" \
            else torch.device("cpu")

    # ------------------------------------------------------------------ models
    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP around `model` in a distributed run (parameters broadcast from rank 0), else the model."""
        if not self.distributed:
            return model
        device = next(model.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)


SINGLE = World()
_current = SINGLE


def current() -> World:
    """The world this process belongs to (a world of one unless started by torchrun)."""
    return _current


def init(device_name: str) -> tuple[World, str]:
    """Join the process group if torchrun started us; return the world and the device to use."""
    global _current
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return _current, device_name
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if device_name == "mps":
        raise ConfigError("runtime.device=mps does not support multi-process training; use cpu or cuda")
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    _current = World(rank=rank, size=size, local_rank=local)
    return _current, (f"cuda:{local}" if use_cuda else "cpu")


def shutdown() -> None:
    """Leave the process group, if this process joined one. A process that exits without it may
    abort as it ends ("terminate called without an active exception": gloo's threads outlive the
    interpreter), and torchrun then reports a finished run as failed."""
    global _current
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _current = SINGLE


def per_rank_seed(seed: int, world: World) -> int:
    """Dropout and other local randomness: a different stream per rank, the same for rank 0 as a
    single process (which keeps single-process runs unchanged)."""
    return seed + 104_729 * world.rank
