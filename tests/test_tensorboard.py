"""runtime.tensorboard=true mirrors metrics.jsonl into TensorBoard event files."""

import builtins
import shutil

import pytest
from support import one_line, run_cli

from seqgan.rundir import RunDir


def _copy(tiny_run, dst) -> RunDir:
    shutil.copytree(tiny_run, dst, ignore=shutil.ignore_patterns("checkpoints", "metrics.jsonl", ".lock"))
    return RunDir(dst)


def test_event_files_hold_the_logged_numbers(tiny_run, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _copy(tiny_run, tmp_path / "r")
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "runtime.tensorboard=true",
                   "pretrain.max_steps=6", "pretrain.log_every=2") == 0
    events = EventAccumulator(str(run.root / "tensorboard"))
    events.Reload()
    logged = [r for r in run.read_metrics("pretrain_generator") if "loss" in r]
    scalars = events.Scalars("pretrain_generator/loss")
    assert [s.step for s in scalars] == [r["step"] for r in logged] == [2, 4, 6]
    assert [round(s.value, 4) for s in scalars] == pytest.approx([r["loss"] for r in logged], abs=1e-4)
    assert "pretrain_generator/valid_ppl" in events.Tags()["scalars"]


def test_missing_tensorboard_package_is_one_line_exit_2(tiny_run, tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    run = _copy(tiny_run, tmp_path / "r")
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "runtime.tensorboard=true") == 2
    assert "pip install 'seqgan[tensorboard]'" in one_line(capsys.readouterr().err)
