"""Diversity and length statistics of a set of generated token sequences."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

Tokens = Sequence[Hashable]


def distinct_n(samples: list[Tokens], n: int) -> float:
    """Unique n-grams / all n-grams over the whole set (0 when there are none)."""
    seen, total = set(), 0
    for s in samples:
        grams = [tuple(s[i : i + n]) for i in range(len(s) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def mean_length(samples: list[Tokens]) -> float:
    return float(np.mean([len(s) for s in samples])) if samples else 0.0


def repetition_rate(samples: list[Tokens], n: int = 2) -> float:
    """Share of samples in which some n-gram occurs more than once ("I am I am ..." loops)."""
    if not samples:
        return 0.0
    rep = 0
    for s in samples:
        grams = [tuple(s[i : i + n]) for i in range(len(s) - n + 1)]
        rep += len(grams) != len(set(grams))
    return rep / len(samples)
