"""Mixed precision (bf16 autocast; fp16 autocast + GradScaler), the GPU path where CUDA exists,
and no device-specific calls in the code."""

import re
import shutil
from pathlib import Path

import pytest
import torch
from support import one_line, run_cli

from seqgan.rundir import RunDir
from seqgan.training.optim import Stepper


def _copy(tiny_run, dst) -> RunDir:
    shutil.copytree(tiny_run, dst, ignore=shutil.ignore_patterns("checkpoints", "metrics.jsonl", ".lock"))
    return RunDir(dst)


@pytest.fixture(scope="module")
def fp32_run(tiny_run, tmp_path_factory):
    run = _copy(tiny_run, tmp_path_factory.mktemp("fp32") / "r")
    assert run_cli("pretrain", "generator", "--run-dir", run.root, *ARGS, "runtime.precision=fp32") == 0
    return run


ARGS = ("runtime.device=cpu", "pretrain.epochs=3", "pretrain.log_every=1")


def _losses(run: RunDir) -> list[float]:
    return [r["loss"] for r in run.read_metrics("pretrain_generator") if "loss" in r]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_pretraining_learns_like_fp32_and_keeps_fp32_weights(tiny_run, fp32_run, tmp_path,
                                                                            precision):
    run = _copy(tiny_run, tmp_path / precision)
    assert run_cli("pretrain", "generator", "--run-dir", run.root, *ARGS, f"runtime.precision={precision}") == 0
    losses, reference = _losses(run), _losses(fp32_run)
    assert losses[-1] < losses[0] - 0.1  # it learns
    assert abs(losses[-1] - reference[-1]) < 0.02  # as fp32 does
    ckpt = torch.load(run.checkpoint("generator", "last"), weights_only=True)
    ref = torch.load(fp32_run.checkpoint("generator", "last"), weights_only=True)["model"]
    assert all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in ckpt["model"].values())
    assert any(not torch.equal(w, ref[k]) for k, w in ckpt["model"].items())  # autocast did run
    assert ("scaler" in ckpt["amp"]) == (precision == "fp16")


def test_fp16_scaler_skips_an_overflowing_step_and_lowers_its_scale():
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    stepper = Stepper(opt, model, grad_clip=1.0, device=torch.device("cpu"), precision="fp16")
    before = model.weight.detach().clone()
    scale = stepper.scaler.get_scale()
    loss = model(torch.full((2, 4), 1e35)).sum()  # gradients overflow once scaled
    stepper.backward(loss)
    assert not stepper.step(loss)
    assert torch.equal(model.weight, before) and stepper.scaler.get_scale() < scale
    opt.zero_grad()
    loss = model(torch.ones(2, 4)).sum()
    stepper.backward(loss)
    assert stepper.step(loss) and not torch.equal(model.weight, before)


def test_bad_precision_or_device_is_one_line_exit_2(tiny_run, tmp_path, capsys):
    run = _copy(tiny_run, tmp_path / "r")
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "runtime.precision=fp8") == 2
    assert "runtime.precision" in one_line(capsys.readouterr().err)
    if not torch.cuda.is_available():
        assert run_cli("pretrain", "generator", "--run-dir", run.root, "runtime.device=cuda") == 2
        assert "CUDA is not available" in one_line(capsys.readouterr().err)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_pipeline_in_bf16(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path / "cuda")
    overrides = ("runtime.device=cuda", "runtime.precision=bf16")
    assert run_cli("pretrain", "generator", "--run-dir", run.root, *overrides) == 0
    assert run_cli("pretrain", "discriminator", "--run-dir", run.root, *overrides) == 0
    assert run_cli("train", "--run-dir", run.root, *overrides) == 0


def test_the_code_never_calls_cuda_directly():
    src = Path(__file__).resolve().parents[2] / "src" / "seqgan"
    offenders = [f"{p.relative_to(src)}:{n}" for p in src.rglob("*.py")
                 for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\.cuda\(\s*\)", line)]
    assert offenders == []
