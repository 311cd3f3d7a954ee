"""Real processes killed mid-run: kill -9 loses at most the work since the last checkpoint, and
resuming reaches the same weights as a run that was never interrupted; SIGTERM saves and exits."""

import os
import signal
import subprocess
import sys
import time

import torch
from support import prepared_copy

from seqgan.rundir import RunDir

# long enough to be killed mid-run, short enough for the suite: ~15 epochs of the tiny preset
ARGS = ("pretrain.epochs=15", "runtime.checkpoint_every=4", "pretrain.log_every=1000")


def _start(run: RunDir) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "seqgan", "pretrain", "generator", "--run-dir", str(run.root), *ARGS],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _saved_step(run: RunDir) -> int:
    path = run.checkpoint("generator", "last")
    if not path.exists():
        return -1
    try:
        return torch.load(path, weights_only=True)["state"]["step"]
    except Exception:  # noqa: BLE001 - replaced while we read it
        return -1


def _wait_for_step(proc: subprocess.Popen, run: RunDir, step: int, timeout: float = 120) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = _saved_step(run)
        if s >= step:
            return s
        assert proc.poll() is None, f"the run ended before step {step}: {proc.communicate()[1][-500:]}"
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint at step {step} within {timeout} s")


def _weights(run: RunDir) -> dict:
    return torch.load(run.checkpoint("generator", "last"), weights_only=True)["model"]


def test_kill_9_then_resume_equals_an_uninterrupted_run(tiny_run, tmp_path):
    full, killed = prepared_copy(tiny_run, tmp_path / "full"), prepared_copy(tiny_run, tmp_path / "killed")
    proc = _start(killed)
    _wait_for_step(proc, killed, 8)
    time.sleep(0.3)  # between two checkpoints, possibly while one is being written
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    lost_at = _saved_step(killed)
    assert lost_at >= 8

    resumed = _start(killed)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-2000:]
    assert not list(killed.root.rglob(".*.tmp")), "a killed write left a temp file behind"
    once = _start(full)
    _, err = once.communicate(timeout=300)
    assert once.returncode == 0, err[-2000:]

    a, b = _weights(full), _weights(killed)
    assert torch.load(full.checkpoint("generator", "last"), weights_only=True)["state"]["step"] > lost_at
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tiny_run, tmp_path):
    run = prepared_copy(tiny_run, tmp_path / "term")
    proc = _start(run)
    _wait_for_step(proc, run, 4)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "SIGTERM received: checkpoint saved" in err and "run the same command to resume" in err
    assert "Traceback" not in err
    assert _saved_step(run) >= 4
