"""Dialogues -> (context, response) pairs, and the split by dialogue (never by pair)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqgan.config import DataConfig
from seqgan.data.corpora import Corpus
from seqgan.errors import DataError

SPLITS = ("train", "valid", "test")


@dataclass
class Pairs:
    contexts: list[str]
    responses: list[str]
    dialogue_ids: list[int]


def clean_dialogue(turns: list[str], max_chars: int, skipped: dict[str, int]) -> list[list[str]]:
    """Drop empty and over-long utterances, counting them. A dialogue is cut where one was, so no
    pair joins the utterances on either side of it: they come from the same speaker."""
    pieces: list[list[str]] = [[]]
    for t in turns:
        if not t:
            skipped["empty_utterances"] += 1
            pieces.append([])
            continue
        if len(t) > max_chars:
            skipped["long_utterances"] += 1
            pieces.append([])
            continue
        pieces[-1].append(t)
    return [p for p in pieces if p]


def make_pairs(dialogues: list[list[str]], ids: list[int], cfg: DataConfig, lowercase: bool = False,
               last_only: list[bool] | None = None) -> Pairs:
    """A dialogue of n utterances gives n-1 pairs; the context is the previous context_turns utterances.
    A dialogue marked in `last_only` (a context/response record) gives one: its last turn's."""
    out = Pairs([], [], [])
    k = cfg.context_turns
    for n, (turns, d) in enumerate(zip(dialogues, ids, strict=True)):
        if lowercase:
            turns = [t.lower() for t in turns]
        first = max(1, len(turns) - 1) if last_only is not None and last_only[n] else 1
        for i in range(first, len(turns)):
            out.contexts.append(cfg.context_separator.join(turns[max(0, i - k) : i]))
            out.responses.append(turns[i])
            out.dialogue_ids.append(d)
    return out


def split_dialogues(corpus: Corpus, cfg: DataConfig, seed: int) -> dict[str, list[int]]:
    """Indices of dialogues per split: the official split when given, else a seeded shuffle."""
    n = len(corpus.dialogues)
    rng = np.random.default_rng(seed)
    if corpus.official_split is not None:
        out = {s: [i for i, x in enumerate(corpus.official_split) if x == s] for s in SPLITS}
        if cfg.max_dialogues is not None:
            keep = set(rng.permutation(n)[: cfg.max_dialogues].tolist())
            out = {s: [i for i in v if i in keep] for s, v in out.items()}
        return out
    order = rng.permutation(n)
    if cfg.max_dialogues is not None:
        order = order[: cfg.max_dialogues]
    n = len(order)
    n_train = int(round(cfg.split[0] * n))
    n_valid = int(round(cfg.split[1] * n))
    if cfg.split[1] > 0 and n_valid == 0 and n >= 3:
        n_valid = 1
    # a split asked for keeps at least one dialogue (rounding must not hand train all of them)
    n_train = min(n_train, n - n_valid - (1 if cfg.split[2] > 0 and n >= 3 else 0))
    if n_train <= 0:
        raise DataError(f"too few dialogues ({n}) to split")
    return {"train": sorted(order[:n_train].tolist()), "valid": sorted(order[n_train : n_train + n_valid].tolist()),
            "test": sorted(order[n_train + n_valid :].tolist())}


def build_splits(corpus: Corpus, cfg: DataConfig, seed: int) -> tuple[dict[str, Pairs], dict[str, int], int]:
    """Clean, split by dialogue, pair. Returns (pairs per split, skip counts, dialogues used)."""
    skipped = {"empty_utterances": 0, "long_utterances": 0, **corpus.skipped, "dialogues_without_pairs": 0}
    by_split = split_dialogues(corpus, cfg, seed)
    out = {}
    used = 0
    for s in SPLITS:
        dialogues, ids, last_only = [], [], []
        for i in by_split[s]:
            pieces = clean_dialogue(corpus.dialogues[i], cfg.max_chars, skipped)
            record = corpus.pair_records is not None and corpus.pair_records[i]
            if record:  # its one pair ends the last piece, unless its response was dropped
                response = corpus.dialogues[i][-1]
                pieces = pieces[-1:] if 0 < len(response) <= cfg.max_chars else []
            # e.g. a monologue (one speaker turn), or turns cut apart by dropped ones
            skipped["dialogues_without_pairs"] += all(len(p) < 2 for p in pieces)
            dialogues += pieces
            ids += [i] * len(pieces)
            last_only += [record] * len(pieces)
        used += len(by_split[s])
        out[s] = make_pairs(dialogues, ids, cfg, cfg.lowercase, last_only)
    if not out["train"].contexts:
        raise DataError("the corpus gives no (context, response) pair for training: every dialogue has fewer "
                        "than two usable utterances")
    for s in ("valid", "test"):
        if not out[s].contexts:
            raise DataError(f"the {s} split has no (context, response) pair ({len(by_split[s])} of {used} "
                            f"dialogues, data.split={list(cfg.split)}): the stages pick their best checkpoints "
                            "on valid and evaluate on test; use more dialogues or larger shares")
    return out, skipped, used
