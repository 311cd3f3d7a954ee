"""Discriminator-derived metrics: accuracy, fooling rate, ROC-AUC (ties as the Mann-Whitney U)."""

from __future__ import annotations

import numpy as np


def accuracy(logits_real: np.ndarray, logits_fake: np.ndarray) -> float:
    """Share of real judged real (logit > 0) and generated judged generated."""
    real, fake = np.asarray(logits_real), np.asarray(logits_fake)
    if len(real) + len(fake) == 0:
        return float("nan")  # undefined, as fooling_rate's: not "always wrong"
    return float(((real > 0).sum() + (fake <= 0).sum()) / (len(real) + len(fake)))


def fooling_rate(logits_fake: np.ndarray) -> float:
    """Share of generated samples the discriminator judges real."""
    z = np.asarray(logits_fake)
    return float((z > 0).mean()) if len(z) else float("nan")


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting 1/2."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels) > 0.5
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    s = scores[order]
    # average ranks over ties (1-based)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))
