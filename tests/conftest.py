"""Shared fixtures: small corpora in each exact format, and a prepared tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import dialogues, run_cli, write_jsonl


@pytest.fixture
def jsonl_corpus(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "corpus.jsonl", dialogues(40))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A prepared tiny run on a small synthetic JSONL corpus (shared by tests that only read it)."""
    root = tmp_path_factory.mktemp("tiny")
    corpus = write_jsonl(root / "corpus.jsonl", dialogues(80, seed=1))
    run = root / "run"
    assert run_cli("prepare", "--config", "tiny", "--run-dir", run, "data.corpus=jsonl", f"data.path={corpus}") == 0
    return run
