"""Test helpers: small corpora in each exact format, the real CLI."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from seqgan.cli import main
from seqgan.rundir import RunDir

WORDS = ("hello hi how are you doing today fine thanks good great what about weekend plans movie "
         "music coffee tea school work home dog cat weather sunny rain yes no maybe sure really nice").split()


def sentence(rng: random.Random, n: int | None = None) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n or rng.randint(3, 9)))


def dialogues(n: int, seed: int = 0, turns: tuple[int, int] = (3, 7)) -> list[list[str]]:
    rng = random.Random(seed)
    return [[sentence(rng) for _ in range(rng.randint(*turns))] for _ in range(n)]


def write_dailydialog_text(path: Path, dialogs: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(" __eou__ ".join(d) + " __eou__\n" for d in dialogs), encoding="utf-8")
    return path


def write_dailydialog_folder(root: Path, n: int = 30, seed: int = 0) -> Path:
    """The official layout: train/dialogues_train.txt, validation/..., test/..."""
    d = dialogues(n, seed)
    k = n // 5
    write_dailydialog_text(root / "train" / "dialogues_train.txt", d[: n - 2 * k])
    write_dailydialog_text(root / "validation" / "dialogues_validation.txt", d[n - 2 * k : n - k])
    write_dailydialog_text(root / "test" / "dialogues_test.txt", d[n - k :])
    return root


def write_jsonl(path: Path, dialogs: list[list[str]]) -> Path:
    path.write_text("".join(json.dumps({"dialogue": d}) + "\n" for d in dialogs), encoding="utf-8")
    return path


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


def prepared_copy(prepared: Path, dst: Path) -> RunDir:
    """A copy of a prepared run with no checkpoints, metrics or lock: a fresh run to train."""
    shutil.copytree(prepared, dst, ignore=shutil.ignore_patterns("checkpoints", "metrics.jsonl", ".lock"))
    return RunDir(dst)


def one_line(err: str) -> str:
    """The CLI's error output, asserted to be a single line (no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def shared_dir() -> Path:
    """../shared beside the checkout (benchmark and test data; may be absent)."""
    return Path(__file__).resolve().parents[1].parent / "shared"
