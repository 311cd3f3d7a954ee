"""Mixed precision (bf16 autocast; fp16 autocast + GradScaler), the GPU path where CUDA exists,
and no device-specific calls in the code."""

import re
from pathlib import Path

import pytest
import torch
from support import one_line, prepared_copy, run_cli

from seqgan.rundir import RunDir
from seqgan.training.optim import Stepper


@pytest.fixture(scope="module")
def fp32_run(tiny_run, tmp_path_factory):
    run = prepared_copy(tiny_run, tmp_path_factory.mktemp("fp32") / "r")
    assert run_cli("pretrain", "generator", "--run-dir", run.root, *ARGS, "runtime.precision=fp32") == 0
    return run


ARGS = ("runtime.device=cpu", "pretrain.epochs=3", "pretrain.log_every=1")


def _losses(run: RunDir) -> list[float]:
    return [r["loss"] for r in run.read_metrics("pretrain_generator") if "loss" in r]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_pretraining_learns_like_fp32_and_keeps_fp32_weights(tiny_run, fp32_run, tmp_path,
                                                                            precision):
    run = prepared_copy(tiny_run, tmp_path / precision)
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
    run = prepared_copy(tiny_run, tmp_path / "r")
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "runtime.precision=fp8") == 2
    assert "runtime.precision" in one_line(capsys.readouterr().err)
    if not torch.cuda.is_available():
        assert run_cli("pretrain", "generator", "--run-dir", run.root, "runtime.device=cuda") == 2
        assert "CUDA is not available" in one_line(capsys.readouterr().err)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_pipeline_in_bf16(tiny_run, tmp_path):
    run = prepared_copy(tiny_run, tmp_path / "cuda")
    overrides = ("runtime.device=cuda", "runtime.precision=bf16")
    assert run_cli("pretrain", "generator", "--run-dir", run.root, *overrides) == 0
    assert run_cli("pretrain", "discriminator", "--run-dir", run.root, *overrides) == 0
    assert run_cli("train", "--run-dir", run.root, *overrides) == 0


def test_the_code_never_calls_cuda_directly():
    src = Path(__file__).resolve().parents[2] / "src" / "seqgan"
    offenders = [f"{p.relative_to(src)}:{n}" for p in src.rglob("*.py")
                 for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\.cuda\(\s*\)", line)]
    assert offenders == []


def test_fp16_discriminator_keeps_one_loss_scale_across_rounds_and_resumes(tiny_run, tmp_path, monkeypatch):
    from seqgan.training import discriminator as dtrain

    run = prepared_copy(tiny_run, tmp_path / "fp16d")
    fp16 = "runtime.precision=fp16"
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "pretrain.max_steps=3", fp16) == 0
    calls = []  # (stepper, its loss scale when the call starts)
    real = dtrain.train_epochs

    def spy(*args, stepper=None, **kwargs):
        calls.append((stepper, None if stepper is None else stepper.scaler.get_scale()))
        return real(*args, stepper=stepper, **kwargs)

    monkeypatch.setattr(dtrain, "train_epochs", spy)
    assert run_cli("pretrain", "discriminator", "--run-dir", run.root, "discriminator.rounds=2", fp16) == 0
    # the resumed stage starts from the saved scale (set here to one a fresh scaler would not have)
    path = run.checkpoint("discriminator", "last")
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["amp"]["scaler"]["scale"] == calls[-1][0].scaler.get_scale()
    ckpt["amp"]["scaler"]["scale"] = 1024.0
    torch.save(ckpt, path)
    assert run_cli("pretrain", "discriminator", "--run-dir", run.root, "discriminator.rounds=3", fp16) == 0
    assert run_cli("train", "--run-dir", run.root, "adversarial.steps=2", "adversarial.eval_every=100", fp16) == 0
    steppers = [c[0] for c in calls]
    # one Stepper (one GradScaler) per stage: 2 D-pretraining rounds, 1 resumed, 2 adversarial d-steps
    assert len(calls) == 5 and None not in steppers
    assert steppers[0] is steppers[1] and steppers[3] is steppers[4] and len({id(s) for s in steppers}) == 3
    assert calls[2][1] == 1024.0
    adv = torch.load(run.checkpoint("adversarial", "last"), weights_only=True)
    assert adv["d_amp"]["scaler"]["scale"] == steppers[4].scaler.get_scale()


@pytest.mark.parametrize("native", [True, False])
def test_reduced_precision_on_a_cpu_without_its_kernels_says_so_once(monkeypatch, capsys, native):
    import seqgan.runtime as runtime

    monkeypatch.setattr(runtime, "native_kernels", lambda precision: native)
    runtime.note_emulated_precision.cache_clear()
    model = torch.nn.Linear(2, 1)
    for precision in ("fp32", "bf16", "bf16"):
        Stepper(torch.optim.SGD(model.parameters(), lr=0.1), model, 1.0, torch.device("cpu"), precision)
    runtime.note_emulated_precision.cache_clear()
    err = capsys.readouterr().err
    if native:
        assert err == ""
    else:
        assert err.count("\n") == 1 and "runtime.precision=bf16" in err and "emulates" in err
