"""Serving fixtures: runs made from `tiny_run` with and without an adversarial generator, apps, ports."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from support import run_cli

from seqgan.config import from_dict
from seqgan.rundir import RunDir


@pytest.fixture(scope="session")
def serve_runs(tiny_run: Path, tmp_path_factory) -> dict[str, Path]:
    """Copies of the tiny run: 'prepared' (no generator), 'pretrained' (no adversarial generator)
    and 'full' (pretrained and adversarial). Stages already complete in tiny_run are skipped."""
    root = tmp_path_factory.mktemp("serve")
    prepared = root / "prepared"
    shutil.copytree(tiny_run, prepared)
    shutil.rmtree(prepared / "checkpoints", ignore_errors=True)
    pretrained = root / "pretrained"
    shutil.copytree(prepared, pretrained)
    assert run_cli("pretrain", "generator", "--run-dir", pretrained) == 0
    full = root / "full"
    shutil.copytree(pretrained, full)
    assert run_cli("pretrain", "discriminator", "--run-dir", full) == 0
    assert run_cli("train", "--run-dir", full) == 0
    return {"prepared": prepared, "pretrained": pretrained, "full": full}


@pytest.fixture(scope="session")
def full_run(serve_runs) -> Path:
    return serve_runs["full"]


@pytest.fixture(scope="session")
def engines(serve_runs) -> dict:
    """One loaded Engine per run, shared by the apps of all tests (loading is the slow part)."""
    from seqgan.serve.app import Engine

    out = {}
    for name in ("pretrained", "full"):
        run = RunDir(serve_runs[name])
        out[name] = Engine(from_dict(run.read_config()), run)
    return out


@pytest.fixture
def make_app(engines):
    """make_app(run='full', **ServeConfig fields) -> a fresh FastAPI app (its own batcher)."""
    from seqgan.serve.app import ServeConfig, create_app

    def make(run: str = "full", **settings):
        engine = engines[run]
        return create_app(engine.cfg, engine.run, ServeConfig(**settings), engine=engine)

    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port() -> int:
    return free_port()
