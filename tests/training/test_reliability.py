"""Non-finite steps, a full or unwritable disk, stale temp files, hostile CLI input, safetensors export."""

import errno
import io
import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from support import dialogues, one_line, prepared_copy, run_cli, write_jsonl

import seqgan.training.adversarial as adversarial
import seqgan.training.discriminator as dtrain
import seqgan.training.mle as mle
from seqgan import rundir as rundir_module
from seqgan.config import from_dict
from seqgan.data.tokenizer import Tokenizer
from seqgan.rundir import RunDir, atomic_write_bytes
from seqgan.training.discriminator import DExamples, train_epochs
from seqgan.training.optim import NonfiniteGuard


def _setup(tiny_run, dst, **runtime):
    run = prepared_copy(tiny_run, dst)
    cfg = from_dict(run.read_config())
    cfg.pretrain.epochs = 1
    for k, v in runtime.items():
        setattr(cfg.runtime, k, v)
    return run, cfg, Tokenizer.load(run.spm_model)


def _nan_at(steps: set[int] | None, monkeypatch):
    """Make mle_loss return NaN on the given call numbers (1-based; None = from the 5th on)."""
    real, calls = mle.mle_loss, [0]

    def loss(*args, **kwargs):
        calls[0] += 1
        value, n = real(*args, **kwargs)
        bad = calls[0] >= 5 if steps is None else calls[0] in steps
        return (value * float("nan") if bad else value), n

    monkeypatch.setattr(mle, "mle_loss", loss)


def test_nonfinite_steps_are_skipped_and_counted(tiny_run, tmp_path, monkeypatch):
    run, cfg, tok = _setup(tiny_run, tmp_path / "r")
    _nan_at({3, 4, 9}, monkeypatch)
    out = mle.pretrain_generator(cfg, run, torch.device("cpu"), tok)
    assert out["complete"] and out["skipped_steps"] == 3
    weights = torch.load(run.checkpoint("generator", "last"), weights_only=True)["model"]
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_too_many_nonfinite_steps_in_a_row_stop_and_keep_the_good_checkpoint(tiny_run, tmp_path, monkeypatch, capsys):
    run, cfg, tok = _setup(tiny_run, tmp_path / "r", checkpoint_every=2, max_nonfinite=3)
    _nan_at(None, monkeypatch)
    with pytest.raises(FloatingPointError, match="3 non-finite generator MLE steps in a row; last good checkpoint kept"):
        mle.pretrain_generator(cfg, run, torch.device("cpu"), tok)
    ckpt = torch.load(run.checkpoint("generator", "last"), weights_only=True)
    assert ckpt["state"]["step"] >= 4 and ckpt["state"]["skipped"] >= 1
    assert all(torch.isfinite(w).all() for w in ckpt["model"].values())
    # through the CLI: one line, exit 1, and the checkpoint is still the good one
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "runtime.max_nonfinite=3") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "non-finite generator MLE steps in a row" in err[0]


def test_a_learning_rate_that_blows_the_weights_up_stops_with_exit_1_and_saves_nothing(tiny_run, tmp_path, capsys):
    """Finite gradients, weights no longer finite after the step: no step is skipped, so the
    stage used to end with exit 0 and non-finite weights in its checkpoints."""
    run = prepared_copy(tiny_run, tmp_path / "r")
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "pretrain.lr=1e308", "pretrain.epochs=1") == 1
    err = one_line(capsys.readouterr().err)
    assert "the generator MLE diverged: its weights are no longer finite" in err and "pretrain.lr" in err
    assert not run.checkpoint("generator", "last").exists() and not run.checkpoint("generator", "best").exists()
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "pretrain.max_steps=2") == 0
    capsys.readouterr()  # the discriminator's weights too: its last step before a save may be the one
    assert run_cli("pretrain", "discriminator", "--run-dir", run.root, "discriminator.lr=1e308",
                   "discriminator.rounds=1", "discriminator.pairs_per_round=16") == 1
    assert "the discriminator diverged: its weights are no longer finite" in one_line(capsys.readouterr().err)
    assert not run.checkpoint("discriminator", "last").exists()


def test_a_full_stdout_or_a_file_where_the_run_keeps_a_folder_is_one_line(tiny_run, tmp_path, capsys, monkeypatch):
    run = prepared_copy(tiny_run, tmp_path / "r")
    for step in (1, 2):
        run.log("pretrain_generator", step=step, epoch=0, loss=5.0 - step, lr=1e-3, tokens_per_s=100.0)
    (run.root / "plots").write_text("not a folder")
    assert run_cli("plot", "--run-dir", run.root) == 2
    assert "cannot write" in one_line(capsys.readouterr().err)

    class Full(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    (run.root / "plots").unlink()
    monkeypatch.setattr("sys.stdout", Full())
    assert run_cli("plot", "--run-dir", run.root, "--json") == 2  # the plots are drawn; their list cannot be printed
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "seqgan plot: error: cannot write the output: No space left on device"
    assert not any("Traceback" in line for line in err)


def test_adversarial_steps_skip_non_finite_losses_and_the_count_in_a_row_survives_a_resume(tiny_run, tmp_path,
                                                                                         monkeypatch, capsys):
    run = prepared_copy(tiny_run, tmp_path / "r")
    assert run_cli("pretrain", "generator", "--run-dir", run.root) == 0
    assert run_cli("pretrain", "discriminator", "--run-dir", run.root) == 0
    real, calls, bad = adversarial.GeneratorObjective.forward, [0], {3, 4}

    def forward(self, *args):
        calls[0] += 1
        loss, stats, running = real(self, *args)
        return (loss * float("nan") if calls[0] in bad else loss), stats, running

    monkeypatch.setattr(adversarial.GeneratorObjective, "forward", forward)
    assert run_cli("train", "--run-dir", run.root) == 0  # 4 steps, the last two non-finite
    ckpt = torch.load(run.checkpoint("adversarial", "last"), weights_only=True)
    assert ckpt["state"]["skipped"] == 2 and ckpt["state"]["nonfinite"] == 2
    assert all(torch.isfinite(w).all() for w in ckpt["model"].values())
    capsys.readouterr()
    # resumed with a limit of 3: the first new non-finite step is the third in a row
    calls[0], bad = 0, {1}
    assert run_cli("train", "--run-dir", run.root, "adversarial.steps=6", "runtime.max_nonfinite=3") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "3 non-finite adversarial generator steps in a row; last good checkpoint kept" in err[0]
    assert torch.load(run.checkpoint("adversarial", "last"), weights_only=True)["state"]["step"] == 4


@pytest.mark.parametrize("command, stage, key, more, what", [
    (("pretrain", "discriminator"), "discriminator", "nonfinite", "discriminator.rounds=2", "discriminator"),
    (("train",), "adversarial", "d_nonfinite", "adversarial.steps=5", "adversarial discriminator"),
], ids=["pretraining", "adversarial"])
def test_discriminator_steps_count_non_finite_steps_in_a_row_across_rounds_and_a_resume(
        tiny_run, tmp_path, monkeypatch, capsys, command, stage, key, more, what):
    run = prepared_copy(tiny_run, tmp_path / "r")
    assert run_cli("pretrain", "generator", "--run-dir", run.root) == 0
    if stage == "adversarial":
        assert run_cli("pretrain", "discriminator", "--run-dir", run.root) == 0
    real, bad = dtrain.d_logits, [True]

    def logits(*args, **kwargs):  # NaN in training steps only (validation and rewards run without grad)
        z = real(*args, **kwargs)
        return z * float("nan") if bad[0] and torch.is_grad_enabled() else z

    monkeypatch.setattr(dtrain, "d_logits", logits)
    # every discriminator step of the first round (or of all 4 adversarial steps) is non-finite
    first = ("discriminator.rounds=1",) if stage == "discriminator" else ()
    assert run_cli(*command, "--run-dir", run.root, "runtime.max_nonfinite=100000", *first) == 0
    state = torch.load(run.checkpoint(stage, "last"), weights_only=True)["state"]
    n = state[key]
    assert n > 1 and state[key.replace("nonfinite", "skipped")] == n
    # resumed with a limit of n + 1: only the count the checkpoint kept makes the next step trip it
    capsys.readouterr()
    assert run_cli(*command, "--run-dir", run.root, more, f"runtime.max_nonfinite={n + 1}") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{n + 1} non-finite {what} steps in a row; last good checkpoint kept" in err[0]


def test_discriminator_stops_after_nonfinite_steps_in_a_row():
    disc = torch.nn.Linear(1, 1)
    weight = disc.weight.detach().clone()

    class NaNDisc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = disc

        def forward(self, ctx, ctx_mask, resp, resp_mask):
            return self.inner(resp[:, :1].float()).squeeze(-1) * float("nan")

    from seqgan.config import DiscriminatorTrainConfig

    n = 64
    ex = DExamples([np.array([5])] * n, [np.array([6, 7])] * n, np.array([1.0, 0.0] * (n // 2), dtype=np.float32))
    opt = torch.optim.SGD(disc.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match="4 non-finite discriminator steps in a row"):
        train_epochs(NaNDisc(), opt, ex, 5, DiscriminatorTrainConfig(batch_size=8), torch.device("cpu"),
                     np.random.default_rng(0), guard=NonfiniteGuard(4, "discriminator"))
    assert torch.equal(disc.weight, weight)  # no bad step was applied


def test_disk_full_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "ckpt.pt"
    atomic_write_bytes(target, b"good")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir_module.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(target, b"new contents" * 1000)
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_disk_full_or_unwritable_run_dir_is_one_line_exit_2(tiny_run, tmp_path, monkeypatch, capsys):
    run = prepared_copy(tiny_run, tmp_path / "r")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir_module.os, "fsync", full)
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "pretrain.max_steps=2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0]
    assert not run.checkpoint("generator", "last").exists()
    monkeypatch.undo()

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert run_cli("prepare", "--config", "tiny", "--run-dir", blocker / "run") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"seqgan prepare: error: cannot use {blocker / 'run'} as a run directory: Not a directory"]


def _temp_file(folder: Path, name: str) -> Path:
    """A temp file named as atomic_write_bytes names its own (mkstemp's)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    os.write(fd, b"half written")
    os.close(fd)
    return Path(tmp)


def test_stale_temp_files_of_a_killed_writer_are_removed_under_the_lock(tmp_path):
    run = RunDir(tmp_path / "r")
    run.root.mkdir()
    (run.root / "config.yaml").write_text("name: tiny\n")
    stale = _temp_file(run.root / "checkpoints" / "generator", "last.pt")
    keep = run.root / "checkpoints" / "generator" / "last.pt"
    keep.write_bytes(b"whole")
    mine = run.root / "checkpoints" / ".notes.tmp"  # a user's file, not named as ours are
    mine.write_text("x")
    # an export writing into the run without the lock (beside training): its temp file is not touched
    live = _temp_file(run.root / "export" / "pretrained", "model.safetensors")
    with run.lock():
        pass
    assert not stale.exists() and keep.exists() and live.exists() and mine.exists()


def test_a_folder_that_is_no_run_keeps_its_files_and_gets_no_lock_file(tmp_path, capsys):
    # `seqgan evaluate --run-dir FOLDER` naming some other folder by mistake
    folder = tmp_path / "project"
    ours = _temp_file(folder / "notes", "draft")
    assert run_cli("evaluate", "--run-dir", folder) == 2
    assert "not a run directory" in one_line(capsys.readouterr().err)
    assert ours.exists() and sorted(p.name for p in folder.iterdir()) == ["notes"]


@pytest.mark.parametrize("args, message", [
    (("pretrain.epochs=abc",), "pretrain.epochs"),
    (("nosuch.key=1",), "unknown config key"),
    (("pretrain.epochs",), "unrecognized arguments"),
    (("--bogus-flag",), "unrecognized arguments"),
    (("pretrain.lr=-1",), "pretrain.lr"),
    (("runtime.checkpoint_every=0",), "runtime.checkpoint_every: must be positive"),
    (("pretrain.log_every=0",), "pretrain.log_every: must be positive"),
    (("runtime.seed=-1",), "runtime.seed: must be from 0"),
    (("pretrain.betas=[0.9]",), "pretrain.betas: two numbers"),
    (("pretrain.weight_decay=-0.1",), "pretrain.weight_decay: must be zero or more"),
    (("model.discriminator.filter_sizes=[1, 2]",), "must have the same length"),
])
def test_invalid_overrides_are_one_line_exit_2(tiny_run, tmp_path, capsys, args, message):
    run = prepared_copy(tiny_run, tmp_path / "r")
    assert run_cli("pretrain", "generator", "--run-dir", run.root, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_random_bytes_as_checkpoints_exit_2(tiny_run, tmp_path, capsys):
    run = prepared_copy(tiny_run, tmp_path / "r")
    rng = random.Random(0)
    for stage in ("generator", "discriminator", "adversarial"):
        path = run.checkpoint(stage, "last")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 4000))))
    for args in (("pretrain", "generator"), ("respond", "--checkpoint", str(run.checkpoint("adversarial", "last")), "hi")):
        assert run_cli(*args, "--run-dir", run.root) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "checkpoint" in err[0], err


def test_export_safetensors_round_trip(tiny_run, tmp_path, capsys, monkeypatch):
    from safetensors.torch import load_file

    from seqgan.artifacts import load_generator
    from seqgan.export import load_exported

    run = prepared_copy(tiny_run, tmp_path / "r")
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "pretrain.max_steps=3") == 0
    out = tmp_path / "exported"
    assert run_cli("export", "--run-dir", run.root, "--checkpoint", "pretrained", "--out", out) == 0
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "spm.model", "spm.vocab"}
    assert (out / "spm.vocab").read_bytes() == run.spm_model.with_suffix(".vocab").read_bytes()
    cfg = from_dict(run.read_config())
    tok = Tokenizer.load(run.spm_model)
    ref, _ = load_generator(cfg, run, tok, torch.device("cpu"), "pretrained")
    tensors = load_file(out / "model.safetensors")
    assert tensors.keys() == ref.state_dict().keys()
    for k, v in ref.state_dict().items():
        assert torch.equal(tensors[k], v), k
    model, tok2, meta = load_exported(out)
    assert meta["tokenizer_hash"] == tok.hash and tok2.hash == tok.hash
    # what a user needs to build contexts as training did, and the run's sampling defaults
    assert meta["data"]["context_turns"] == cfg.data.context_turns and meta["sample"]["max_len"] == cfg.sample.max_len
    src = torch.tensor([tok.encode("hello there")])
    tgt = torch.tensor([[2, 5, 6, 7]])
    with torch.no_grad():
        assert torch.equal(model(src, torch.ones_like(src, dtype=torch.bool), tgt),
                           ref(src, torch.ones_like(src, dtype=torch.bool), tgt))
    # a re-export cut short after the new weights leaves no config.json: the folder is not taken
    # for a complete export pairing the new weights with the old tokenizer
    from seqgan import export
    from seqgan.errors import CheckpointError

    real_write = export.atomic_write_bytes

    def crash_on_tokenizer(path, data):
        if path.name == "spm.model":
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(export, "atomic_write_bytes", crash_on_tokenizer)
    with pytest.raises(OSError):
        export.export_generator(cfg, run, "pretrained", out)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_exported(out)
    assert run_cli("export", "--run-dir", run.root, "--checkpoint", "pretrained", "--out", out) == 0
    # a damaged export is refused with one line
    good = (out / "config.json").read_text()
    edited = json.loads(good)
    edited["generator"]["num_layers"] = "2"  # hand-edited: a string where a count belongs
    (out / "config.json").write_text(json.dumps(edited))
    with pytest.raises(CheckpointError, match="has an unusable generator config: TypeError"):
        load_exported(out)
    (out / "config.json").write_text(good)
    (out / "model.safetensors").write_bytes(os.urandom(100))

    with pytest.raises(CheckpointError, match="not readable"):
        load_exported(out)
    # --out naming a file, or nothing to export yet: one line, exit 2
    capsys.readouterr()
    assert run_cli("export", "--run-dir", run.root, "--checkpoint", "pretrained", "--out", out / "config.json") == 2
    assert "is a file" in one_line(capsys.readouterr().err)
    assert run_cli("export", "--run-dir", run.root, "--checkpoint", "adversarial") == 2
    assert "no adversarial generator yet" in capsys.readouterr().err


@pytest.mark.parametrize("problem, message", [("tokenizer", "different tokenizer"),
                                              ("shape", "does not fit this model's shape"),
                                              ("foreign", "not a seqgan checkpoint"),
                                              ("fields", "has no 'optimizer' field"),
                                              ("kinds", "its state field 'step' is '12': str, not int")])
def test_mismatched_checkpoints_exit_2_with_one_line(tiny_run, tmp_path, capsys, problem, message):
    from dataclasses import replace

    from seqgan.models import build_generator
    from seqgan.training.checkpoint import save_checkpoint
    from seqgan.training.mle import generator_config

    run = prepared_copy(tiny_run, tmp_path / "r")
    cfg = from_dict(run.read_config())
    tok = Tokenizer.load(run.spm_model)
    gen_cfg = generator_config(cfg, tok.vocab_size)
    if problem == "shape":
        gen_cfg = replace(gen_cfg, hidden_dim=gen_cfg.hidden_dim * 2, ff_dim=gen_cfg.ff_dim * 2)
    path = run.checkpoint("generator", "last")
    if problem == "foreign":
        path.parent.mkdir(parents=True)
        torch.save({"model": build_generator(gen_cfg).state_dict()}, path)
    elif problem == "kinds":  # the right tag and fields, a counter of another kind (hand-edited)
        from seqgan.training.optim import make_adamw, warmup_cosine

        model = build_generator(gen_cfg)
        optimizer = make_adamw(model, 1e-3, 0.01)
        save_checkpoint(path, config={}, tokenizer_hash=tok.hash, model=model.state_dict(),
                        optimizer=optimizer.state_dict(), scheduler=warmup_cosine(optimizer, 1, 10, 0.1).state_dict(),
                        state={"step": "12"})
    else:  # "fields": the right tag, but another stage's fields (no optimizer state)
        save_checkpoint(path, config={}, tokenizer_hash="0" * 64 if problem == "tokenizer" else tok.hash,
                        model=build_generator(gen_cfg).state_dict())
    assert run_cli("pretrain", "generator", "--run-dir", run.root) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_generator_saved_with_other_settings_of_the_same_shapes_is_refused(tiny_run, tmp_path, capsys):
    """num_heads (and num_layers of a shared layer) change no tensor's shape: such a checkpoint
    loaded into this run's model without an error and computed something else."""
    from dataclasses import replace

    from seqgan.config import to_dict
    from seqgan.models import build_generator
    from seqgan.training.checkpoint import save_checkpoint
    from seqgan.training.mle import generator_config

    run = prepared_copy(tiny_run, tmp_path / "r")
    tok = Tokenizer.load(run.spm_model)
    mine = generator_config(from_dict(run.read_config()), tok.vocab_size)
    other = replace(mine, num_heads=mine.num_heads * 2, num_layers=mine.num_layers + 1)
    path = tmp_path / "other.pt"
    save_checkpoint(path, config={}, tokenizer_hash=tok.hash, model=build_generator(other).state_dict(),
                    model_config=to_dict(other))
    for command in (["respond", "--checkpoint", str(path), "hi"], ["export", "--checkpoint", str(path)]):
        assert run_cli(*command[:1], "--run-dir", run.root, *command[1:]) == 2, command
        assert one_line(capsys.readouterr().err).endswith(
            f"holds a generator built with model.generator.num_layers={other.num_layers} (this run: "
            f"{mine.num_layers}), model.generator.num_heads={other.num_heads} (this run: {mine.num_heads}); use it "
            "from its own run directory"), command
    # the same settings but dropout: loaded
    same = replace(mine, dropout=0.5)
    save_checkpoint(path, config={}, tokenizer_hash=tok.hash, model=build_generator(same).state_dict(),
                    model_config=to_dict(same))
    assert run_cli("respond", "--run-dir", run.root, "--checkpoint", path, "hi") == 0


def test_a_signal_after_the_last_check_still_stops_the_command():
    import signal

    from seqgan.training.signals import Interrupted, StopFlag

    with pytest.raises(Interrupted, match="SIGTERM received") as e:
        with StopFlag() as stop:
            stop._handle(signal.SIGTERM, None)  # as if it came during a stage's final validation
    assert e.value.exit_code == 143
    with StopFlag() as stop:  # no signal: nothing raised
        pass
    assert not stop.requested


def test_run_dir_that_is_a_file_and_a_folder_named_like_a_preset(tmp_path, capsys, monkeypatch):
    f = tmp_path / "afile"
    f.write_text("x")
    assert run_cli("pretrain", "generator", "--run-dir", f) == 2
    assert "is a file, not a run directory" in one_line(capsys.readouterr().err)
    # a folder the kernel refuses to make (ENOENT, which is no storage error) is one line too
    assert run_cli("prepare", "--config", "tiny", "--run-dir", "/proc/seqgan-run") == 2
    assert one_line(capsys.readouterr().err) == ("seqgan prepare: error: cannot use /proc/seqgan-run as a run "
                                                 "directory: No such file or directory")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").mkdir()  # e.g. --run-dir tiny made by an earlier command
    from seqgan.config import load_config

    assert load_config("tiny").name == "tiny"


def test_a_mistyped_run_dir_is_not_left_behind(tmp_path, capsys):
    typo = tmp_path / "runs" / "chitchat-cup"
    assert run_cli("train", "--run-dir", typo) == 2
    assert "no tokenizer yet" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()  # it held only the lock file
    typo.mkdir(parents=True)
    assert run_cli("train", "--run-dir", typo) == 2
    assert typo.is_dir()  # a folder that was there stays
    capsys.readouterr()


def test_a_torn_metrics_line_does_not_swallow_the_next_record(tmp_path):
    run = RunDir(tmp_path / "r")
    run.log("stage", a=1)
    with open(run.metrics_path, "a") as f:
        f.write('{"stage": "stage", "b"')  # a crash in the middle of a write
    run.log("stage", c=3)
    assert [r.get("a", r.get("c")) for r in run.read_metrics()] == [1, 3]
    with open(run.metrics_path, "ab") as f:  # bytes that are not UTF-8, then a number Python will not convert
        f.write(b'\xff\xfe{"stage": "stage"}\n{"stage": "stage", "d": ' + b"9" * 5000 + b"}\n")
    run.log("stage", e=5)
    assert [r.get("a", r.get("c", r.get("e"))) for r in run.read_metrics()] == [1, 3, 5]


def test_a_number_too_long_for_python_in_a_config_is_one_line(tmp_path, capsys):
    huge = "9" * 5000
    assert run_cli("prepare", "--config", "tiny", "--run-dir", tmp_path / "r", f"pretrain.epochs={huge}") == 2
    assert "pretrain.epochs: expected an integer" in one_line(capsys.readouterr().err)
    (tmp_path / "c.yaml").write_text(f"name: c\npretrain:\n  epochs: {huge}\n")
    assert run_cli("prepare", "--config", tmp_path / "c.yaml", "--run-dir", tmp_path / "r") == 2
    assert "c.yaml" in one_line(capsys.readouterr().err) and not (tmp_path / "r").exists()


def test_prepare_again_refuses_to_replace_data_under_checkpoints(tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", dialogues(60, seed=3))
    run = RunDir(tmp_path / "r")
    assert run_cli("prepare", "--config", "tiny", "--run-dir", run.root, "data.corpus=jsonl", f"data.path={corpus}") == 0
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "pretrain.max_steps=2") == 0
    before = run.spm_model.read_bytes()
    capsys.readouterr()
    # a training seed given later is no data seed: the data stay (it re-split them before 2026-11-27)
    assert run_cli("prepare", "--run-dir", run.root, "--seed", "7", "--json") == 0
    assert json.loads(capsys.readouterr().out)["reused"]
    write_jsonl(corpus, dialogues(61, seed=3))  # the corpus changed
    assert run_cli("prepare", "--run-dir", run.root) == 2
    assert "has checkpoints trained on its prepared data" in one_line(capsys.readouterr().err)
    assert run.spm_model.read_bytes() == before and run.checkpoint("generator", "last").exists()
    write_jsonl(corpus, dialogues(60, seed=3))  # the corpus as it was, and a manifest of another shape
    manifest = run.data_dir / "manifest.json"
    for damaged in ("[1, 2]", '{"key": 5, "tokenizer_hash": [1], "data_seed": "x", "summary": 3}'):
        manifest.write_text(damaged)
        assert run_cli("prepare", "--run-dir", run.root) == 2  # not read as "not prepared" and replaced
        assert "data/manifest.json is missing or damaged" in one_line(capsys.readouterr().err)
        assert run_cli("respond", "--run-dir", run.root, "hi") == 0  # the data's own check has nothing to read
    run.config_path.write_text("")
    assert run_cli("respond", "--run-dir", run.root, "hi") == 2
    assert "config.yaml is empty" in one_line(capsys.readouterr().err)


def test_prepare_does_not_call_a_damaged_tokenizer_up_to_date(tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", dialogues(40, seed=3))
    run = RunDir(tmp_path / "r")
    args = ["prepare", "--config", "tiny", "--run-dir", run.root, "data.corpus=jsonl", f"data.path={corpus}"]
    assert run_cli(*args) == 0
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "pretrain.max_steps=2") == 0
    good = run.spm_model.read_bytes()
    run.spm_model.write_bytes(good[: len(good) // 2])
    capsys.readouterr()
    assert run_cli("prepare", "--run-dir", run.root) == 2
    assert "spm.model or a data split is missing or not the one prepared" in one_line(capsys.readouterr().err)
    assert run_cli("prepare", "--run-dir", run.root, "--force") == 0
    assert run.spm_model.read_bytes() == good  # made again, byte for byte: the checkpoints still fit
    assert run_cli("respond", "--run-dir", run.root, "hi") == 0


@pytest.mark.parametrize("command, option", [("generate", "--config"), ("generate", "--run-dir"),
                                             ("generate", "--split"), ("export", "--out"), ("export", "--checkpoint")])
def test_an_empty_option_value_is_refused_not_taken_as_the_default(command, option, capsys):
    assert run_cli(command, option, "") == 2
    assert f"{option} is empty" in one_line(capsys.readouterr().err)


def test_an_empty_directory_name_to_compare_is_refused_not_read_as_the_current_one(capsys):
    assert run_cli("evaluate", "--compare", "runs/a", "") == 2
    assert "--compare names an empty directory" in one_line(capsys.readouterr().err)


def test_data_encoded_by_another_tokenizer_is_refused_with_one_line(tiny_run, tmp_path, capsys):
    import json

    run = prepared_copy(tiny_run, tmp_path / "r")
    manifest = run.data_dir / "manifest.json"
    m = json.loads(manifest.read_text())
    m["tokenizer_hash"] = "0" * 64  # as if prepare stopped between swapping the tokenizer and the data
    manifest.write_text(json.dumps(m))
    assert run_cli("pretrain", "generator", "--run-dir", run.root) == 2
    assert "encoded by another tokenizer" in one_line(capsys.readouterr().err)


def test_a_folder_of_other_files_is_not_taken_for_a_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    corpus = write_jsonl(tmp_path / "data" / "dialogues.jsonl", dialogues(20))
    (tmp_path / "data" / "NOTES.txt").write_text("mine")
    for args in (["prepare", "--config", "tiny", "--run-dir", ".", "data.corpus=jsonl", f"data.path={corpus}"],
                 ["oracle", "--config", "tiny", "--run-dir", "."]):
        assert run_cli(*args) == 2
        assert "is not a run directory (no config.yaml) and is not empty (data)" in one_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["NOTES.txt", "dialogues.jsonl"]
    # an empty folder, or one with only hidden files (the lock), is fine
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / ".lock").write_text("")
    assert run_cli("prepare", "--config", "tiny", "--run-dir", "new", "data.corpus=jsonl", f"data.path={corpus}") == 0


def test_an_oracle_experiment_and_a_dialogue_run_do_not_share_a_folder(tiny_run, tmp_path, capsys):
    dialogue = prepared_copy(tiny_run, tmp_path / "d")
    before = dialogue.config_path.read_bytes()
    assert run_cli("oracle", "--config", "tiny", "--run-dir", dialogue.root) == 2
    assert "holds a dialogue run (data/), not an oracle experiment" in one_line(capsys.readouterr().err)
    assert dialogue.config_path.read_bytes() == before and not (dialogue.root / "checkpoints").exists()
    oracle = RunDir(tmp_path / "o")
    assert run_cli("oracle", "--config", "tiny", "--run-dir", oracle.root, "oracle.d_pretrain_rounds=0",
                   "oracle.adv_rounds=0", "oracle.mle_epochs=1") == 0
    before = oracle.config_path.read_bytes()
    capsys.readouterr()
    for args in (["prepare"], ["run"]):
        assert run_cli(*args, "--config", "tiny", "--run-dir", oracle.root) == 2, args
        assert "holds an oracle experiment, not a dialogue run" in one_line(capsys.readouterr().err), args
    assert oracle.config_path.read_bytes() == before and not oracle.data_dir.exists()


def test_a_command_that_stops_on_a_missing_stage_leaves_config_yaml_as_it_was(tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", dialogues(20))
    run = tmp_path / "r"
    assert run_cli("prepare", "--config", "tiny", "--run-dir", run, "data.corpus=jsonl", f"data.path={corpus}") == 0
    before = (run / "config.yaml").read_text()
    for args in (["generate"], ["pretrain", "discriminator"], ["train"], ["evaluate"]):
        assert run_cli(*args, "--run-dir", run, "sample.temperature=7", "pretrain.epochs=9") == 2, args
        capsys.readouterr()
        assert (run / "config.yaml").read_text() == before, args


def test_damaged_or_odd_inputs_are_one_line(tiny_run, tmp_path, capsys):
    run = prepared_copy(tiny_run, tmp_path / "r")
    assert run_cli("pretrain") == 2  # overrides are optional: only the model is named as missing
    assert one_line(capsys.readouterr().err).startswith("seqgan: the following arguments are required: STAGE (")
    test = run.split_path("test")
    test.write_bytes(test.read_bytes()[: test.stat().st_size // 2])  # a split cut short
    assert run_cli("evaluate", "--run-dir", run.root) == 2
    assert "is not a prepared split" in one_line(capsys.readouterr().err)
    with np.load(run.split_path("valid")) as z:  # a readable archive whose arrays do not make a split
        arrays = dict(z)
    for name, value, says in (("response_offsets", arrays["response_offsets"][:-1], "offsets"),
                              ("response_ids", arrays["response_ids"].reshape(1, -1), "not a vector"),
                              ("dialogue_ids", arrays["dialogue_ids"][:0], "differ in number"),
                              ("context_ids", arrays["context_ids"] + 10**6, "past the tokenizer's")):
        np.savez(test, **{**arrays, name: value})
        assert run_cli("evaluate", "--run-dir", run.root) == 2
        err = one_line(capsys.readouterr().err)
        assert "is not a prepared split (" in err and says in err, name
    assert run_cli("prepare", "--config", "tiny", "--run-dir", tmp_path / "n", "data.corpus=jsonl",
                   "data.path=~no_such_user_here/c.jsonl") == 2
    assert "data.path=~no_such_user_here/c.jsonl" in one_line(capsys.readouterr().err)
    run.log("stage", a=1)
    with open(run.metrics_path, "a") as f:
        f.write("5\n[1, 2]\n")  # JSON, but not records
    run.log("stage", a=2)
    assert [r["a"] for r in run.read_metrics("stage")] == [1, 2]


def test_a_second_sigterm_stops_at_once_with_sigterms_exit_code(tiny_run, tmp_path, monkeypatch, capsys):
    """It exited 130, the code of SIGINT: a supervisor read a SIGTERM as a Ctrl-C."""
    import signal

    from seqgan import cli
    from seqgan.training.signals import StopFlag, StopNow

    with pytest.raises(StopNow) as caught, StopFlag() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested  # the first: finish the step, save, stop; said at once (a round takes minutes)
        assert capsys.readouterr().err == ("SIGTERM received: the step, epoch or round in progress finishes and is "
                                           "saved, then the command stops (another SIGTERM stops it at once; the last "
                                           "checkpoint stays)\n")
        os.kill(os.getpid(), signal.SIGTERM)  # the second: at once
    assert caught.value.exit_code == 143

    def stopped_twice(ctx):
        with StopFlag():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setitem(cli.COMMANDS, "train", stopped_twice)
    assert run_cli("train", "--run-dir", prepared_copy(tiny_run, tmp_path / "r").root) == 143
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.parametrize("args", [("status", "--run-dir", "a" * 300), ("prepare", "--config", "c" * 300),
                                  ("respond", "--run-dir", "r" * 300, "hi")])
def test_a_path_no_file_system_holds_is_one_line(args, capsys):
    assert run_cli(*args) == 2
    assert one_line(capsys.readouterr().err).endswith(": File name too long")
