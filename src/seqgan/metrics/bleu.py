"""BLEU: corpus BLEU-1..4 (sacrebleu) for dialogue; Texygen-style BLEU-n and Self-BLEU, exact and fast.

Texygen-style BLEU-n is NLTK's `sentence_bleu` (uniform weights over 1..n, smoothing method1,
epsilon 0.1) of each hypothesis against the whole reference set, averaged over hypotheses. With
the reference set fixed, the clipping counts (the largest count of each n-gram in any reference)
and the sorted reference lengths are computed once, so each hypothesis costs O(its length).
"""

from __future__ import annotations

import bisect
import functools
import math
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np

Tokens = Sequence[Hashable]
EPSILON = 0.1  # NLTK SmoothingFunction().method1


def corpus_bleu(hypotheses: list[str], references: list[str], max_order: int = 4) -> dict[str, float]:
    """sacrebleu corpus BLEU-n (n = 1..max_order, each with max_ngram_order=n), one reference each."""
    from sacrebleu.metrics import BLEU

    out = {}
    for n in range(1, max_order + 1):
        out[f"bleu_{n}"] = BLEU(max_ngram_order=n).corpus_score(hypotheses, [references]).score
    return out


def ngrams(tokens: Tokens, n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _closest(lengths: list[int], c: int) -> int:
    """The reference length closest to c, ties to the shorter (NLTK closest_ref_length)."""
    i = bisect.bisect_left(lengths, c)
    cands = lengths[max(0, i - 1) : i + 1]
    return min(cands, key=lambda r: (abs(r - c), r))


def _sentence_bleu(hyp: Tokens, n: int, clip: list[dict], ref_len: int) -> float:
    """NLTK sentence_bleu with uniform weights and method1, given clipping counts and the closest ref length."""
    c = len(hyp)
    nums, dens = [], []
    for k in range(1, n + 1):
        counts = ngrams(hyp, k)
        nums.append(sum(min(v, clip[k - 1].get(g, 0)) for g, v in counts.items()))
        dens.append(max(1, sum(counts.values())))
    if nums[0] == 0:
        return 0.0
    if c > ref_len:
        bp = 1.0
    elif c == 0:
        bp = 0.0
    else:
        bp = math.exp(1 - ref_len / c)
    w = 1.0 / n  # multiplied, as NLTK's weights are: x / 3 and x * (1 / 3) can differ in the last bit
    logs = [math.log((EPSILON if num == 0 else num) / den) for num, den in zip(nums, dens, strict=True)]
    return bp * math.exp(math.fsum(w * lg for lg in logs))


def _mean(scores: list[float]) -> float:
    """Texygen's average, sum(bleu) / len(bleu): summed left to right, so equal to it bit for bit."""
    return float(sum(scores) / len(scores))


class ReferenceSet:
    """Clipping counts and lengths of a fixed reference set, for Texygen-style BLEU."""

    def __init__(self, references: list[Tokens], max_order: int = 5):
        self.max_order = max_order
        self.clip: list[dict] = [{} for _ in range(max_order)]
        for ref in references:
            for k in range(1, max_order + 1):
                table = self.clip[k - 1]
                for g, v in ngrams(ref, k).items():
                    if v > table.get(g, 0):
                        table[g] = v
        self.lengths = sorted({len(r) for r in references})

    def bleu(self, hyp: Tokens, n: int) -> float:
        return _sentence_bleu(hyp, n, self.clip, _closest(self.lengths, len(hyp)))


def texygen_bleu(hypotheses: list[Tokens], references: list[Tokens], n: int) -> float:
    """Mean over hypotheses of NLTK sentence_bleu(references, hyp, uniform 1/n, method1)."""
    return texygen_bleus(hypotheses, references, (n,))[f"texygen_bleu_{n}"]


def texygen_bleus(hypotheses: list[Tokens], references: list[Tokens], orders: Sequence[int]) -> dict[str, float]:
    """texygen_bleu for several n at once, the reference set's tables built once: {"texygen_bleu_n": ..}."""
    if not hypotheses or not references:
        return {f"texygen_bleu_{n}": 0.0 for n in orders}
    refs = ReferenceSet(references, max(orders))
    return {f"texygen_bleu_{n}": _mean([refs.bleu(h, n) for h in hypotheses]) for n in orders}


def words(text: str) -> list[str]:
    """The words of a detokenized text as corpus BLEU sees them (sacrebleu's default 13a tokenizer)."""
    return _tokenizer_13a()(text).split()


@functools.cache
def _tokenizer_13a():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()


def self_bleu(samples: list[Tokens], n: int, max_samples: int | None = None, seed: int = 0) -> float:
    """Mean BLEU-n of each sample against all the others (itself excluded; its duplicates stay).

    For every n-gram the two largest counts over samples are kept, so leaving one sample out
    is exact and O(its length). max_samples scores a seeded subset of hypotheses (against all).
    """
    if len(samples) < 2:
        return math.nan  # no other sample to compare with
    tables = []  # per order: gram -> [max1, number of samples with max1, max2]
    for k in range(1, n + 1):
        t: dict = {}
        for s in samples:
            for g, v in ngrams(s, k).items():
                e = t.get(g)
                if e is None:
                    t[g] = [v, 1, 0]
                elif v > e[0]:
                    e[2], e[0], e[1] = e[0], v, 1
                elif v == e[0]:
                    e[1] += 1
                elif v > e[2]:
                    e[2] = v
        tables.append(t)
    length_count = Counter(len(s) for s in samples)
    idx = range(len(samples))
    if max_samples is not None and max_samples < len(samples):
        idx = np.random.default_rng(seed).choice(len(samples), max_samples, replace=False)
    scores = []
    for i in idx:
        h = samples[i]
        clip = []
        for k in range(1, n + 1):
            own = ngrams(h, k)
            table = tables[k - 1]
            c = {}
            for g, v in own.items():
                m1, cnt, m2 = table[g]
                c[g] = m2 if (v == m1 and cnt == 1) else m1
            clip.append(c)
        length_count[len(h)] -= 1
        lengths = sorted(L for L, m in length_count.items() if m > 0)
        length_count[len(h)] += 1
        scores.append(_sentence_bleu(h, n, clip, _closest(lengths, len(h))))
    return _mean(scores)
