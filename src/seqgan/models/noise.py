"""Keyed random numbers: the noise of a row depends on (seed, row key, draw), never on the batch.

Sampling with one `torch.Generator` for a whole batch ties every row's tokens to the batch it
was drawn in: its size, its order, which rows were dropped at eos, how rows were split into
chunks or across processes. Here each uniform is a hash (splitmix64) of the seed, the row's key
and a counter, so a row samples the same tokens alone, in any batch, after compaction, in any
rollout chunk and on any rank of a distributed run, and a run gives the same result with 1 or N
processes. A caller draws one seed per call from its `torch.Generator`, keeping that stream in
step on every rank.
"""

from __future__ import annotations

import torch

_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)  # splitmix64 constants as signed int64
_MUL1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MUL2 = 0x94D049BB133111EB - (1 << 64)


def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finalizer on int64 tensors (arithmetic wraps modulo 2**64)."""
    x = x + _GOLDEN
    x = (x ^ _shr(x, 30)) * _MUL1
    x = (x ^ _shr(x, 27)) * _MUL2
    return x ^ _shr(x, 31)


def to_uniform(h: torch.Tensor) -> torch.Tensor:
    """The top 24 bits of int64 hashes as float32 in [0, 1) (exact)."""
    return _shr(h, 40).to(torch.float32) * (1.0 / (1 << 24))


def draw_seed(generator: torch.Generator | None = None) -> int:
    """One 62-bit seed from `generator` (or the global RNG): exactly one draw per call."""
    return int(torch.randint(0, 1 << 62, (1,), generator=generator))


class RowNoise:
    """Uniform draws for B rows: `uniform(step)` (B,), `grid(shape)` (B, *shape)."""

    def __init__(self, seed: int, keys: torch.Tensor):
        self.seed = seed
        self.keys = keys.to(torch.int64)  # (B,)
        self._base = splitmix64(splitmix64(self.keys) ^ seed)  # (B,)

    @classmethod
    def draw(cls, generator: torch.Generator | None, keys: torch.Tensor) -> RowNoise:
        return cls(draw_seed(generator), keys)

    def __len__(self) -> int:
        return len(self.keys)

    def uniform(self, step: int) -> torch.Tensor:
        """Draw number `step` of every row, (B,) in [0, 1)."""
        offset = torch.tensor(step, dtype=torch.int64, device=self._base.device) * _GOLDEN  # wraps
        return to_uniform(splitmix64(self._base + offset))

    def grid(self, shape: tuple[int, ...], salt: int = 0) -> torch.Tensor:
        """A block of draws per row, (B, *shape) in [0, 1); `salt` gives independent blocks."""
        n = 1
        for s in shape:
            n *= s
        idx = torch.arange(n, device=self._base.device, dtype=torch.int64) + (salt << 40)
        h = splitmix64(splitmix64(self._base)[:, None] ^ idx[None, :])
        return to_uniform(h).view(len(self), *shape)

    def select(self, index: torch.Tensor) -> RowNoise:
        """Rows `index` (B',) with their own streams (e.g. the rows still decoding)."""
        out = RowNoise.__new__(RowNoise)
        out.seed, out.keys, out._base = self.seed, self.keys[index], self._base[index]
        return out

    def fork(self, *salts: int | torch.Tensor) -> RowNoise:
        """New independent streams per row, keyed by this row's stream and the salts (scalars or (B,))."""
        key = self._base
        for s in salts:
            key = splitmix64(key ^ splitmix64(torch.as_tensor(s, dtype=torch.int64, device=key.device)))
        return RowNoise(self.seed, key)
