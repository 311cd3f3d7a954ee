"""Device, precision, threads and seeds: explicit, never global."""

from __future__ import annotations

import random
import sys
from functools import cache

import numpy as np
import torch
from tqdm import tqdm

from seqgan.config import RuntimeConfig
from seqgan.errors import ConfigError
from seqgan.rundir import main_process


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("runtime.device: cuda requested but CUDA is not available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("runtime.device: mps requested but MPS is not available")
    return torch.device(name)


def setup(rt: RuntimeConfig) -> torch.device:
    """Join the process group when started by torchrun, set threads and seeds; return the device.

    Ranks other than 0 get their own seed stream (dropout differs per rank, as it should) and no
    progress bars.
    """
    from seqgan import distributed

    world, device_name = distributed.init(rt.device)
    if rt.threads > 0:
        torch.set_num_threads(rt.threads)
    if not world.main:
        rt.progress = False
    seed_everything(distributed.per_rank_seed(rt.seed, world))
    return resolve_device(device_name)


@cache
def note_emulated_precision(precision: str) -> None:
    """Say once per process, where training first runs under bf16 / fp16 on a CPU, when oneDNN has
    no native kernels for it there: PyTorch emulates them (an AVX2 CPU: docs/BENCHMARKS.md)."""
    if native_kernels(precision) is False and main_process():
        tqdm.write(f"note: runtime.precision={precision}: this CPU ({torch.backends.cpu.get_cpu_capability()}) "
                   f"has no native {precision} kernels, so PyTorch emulates them, several times slower than fp32 "
                   "here", file=sys.stderr)


def native_kernels(precision: str) -> bool | None:
    """Whether oneDNN has native CPU kernels for bf16 (AVX-512 and newer) / fp16 (AVX-512-FP16 or
    AMX) here, None where this PyTorch cannot tell. An AVX2 CPU has neither."""
    probe = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}.get(precision)
    try:
        return bool(getattr(torch.ops.mkldnn, probe)()) if probe else None
    except (AttributeError, RuntimeError):
        return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
