"""runtime.tensorboard=true mirrors metrics.jsonl into TensorBoard event files."""

import builtins

import pytest
from support import one_line, prepared_copy, run_cli

from seqgan.rundir import RunDir


def test_event_files_hold_the_logged_numbers(tiny_run, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = prepared_copy(tiny_run, tmp_path / "r")
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "runtime.tensorboard=true",
                   "pretrain.max_steps=6", "pretrain.log_every=2") == 0
    events = EventAccumulator(str(run.root / "tensorboard" / "pretrain_generator"))  # a folder per stage
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
    run = prepared_copy(tiny_run, tmp_path / "r")
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "runtime.tensorboard=true") == 2
    assert "pip install 'seqgan[tensorboard]'" in one_line(capsys.readouterr().err)


def test_oracle_curves_are_tagged_by_phase_at_their_epoch_or_round(tmp_path):
    """The oracle's records carry `phase` and `index`: each phase is a curve of its own, at its
    epochs or rounds (they all sat at step 0 in one tag, with `index` logged as a number)."""
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = RunDir(tmp_path / "o")
    assert run_cli("oracle", "--config", "tiny", "--run-dir", run.root, "runtime.tensorboard=true") == 0
    tags = {}
    for phase in ("mle", "d_pretrain", "adversarial"):  # a folder per phase
        events = EventAccumulator(str(run.root / "tensorboard" / f"oracle_{phase}"))
        events.Reload()
        tags[phase] = events.Tags()["scalars"]
        assert not [t for t in tags[phase] if t.endswith("/index")] and "oracle/nll_oracle" not in tags[phase]
        if phase == "d_pretrain":
            continue
        logged = [r for r in run.read_metrics("oracle") if r.get("phase") == phase and "nll_oracle" in r]
        scalars = events.Scalars(f"oracle/{phase}/nll_oracle")
        assert [s.step for s in scalars] == [r["index"] for r in logged] and len(logged) >= 2, phase
        assert [round(s.value, 4) for s in scalars] == pytest.approx([r["nll_oracle"] for r in logged], abs=1e-4)
    assert "oracle/d_pretrain/d_accuracy" in tags["d_pretrain"] and "oracle/adversarial/d_accuracy" in tags["adversarial"]
    # round r's figures sit at its index r, with its evaluation (round=r+1 is logged once it is done)
    rounds = [r["round"] - 1 for r in run.read_metrics("oracle") if r.get("phase") == "adversarial" and "reward" in r]
    assert [s.step for s in events.Scalars("oracle/adversarial/reward")] == rounds and rounds[0] == 0


def test_a_resumed_stage_hides_the_abandoned_attempts_points(tmp_path):
    """A resumed stage logs again the steps after its last checkpoint; the points the killed
    attempt logged from there (here step 30, never reached again) were drawn on as well."""
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = RunDir(tmp_path / "r")
    first.enable_tensorboard()
    for step, loss in ((10, 5.0), (20, 4.0), (30, 3.0)):
        first.log("pretrain_generator", step=step, loss=loss)
    first._tensorboard["pretrain_generator"].close()
    again = RunDir(tmp_path / "r")  # the resumed process, from the checkpoint at step 10
    again.enable_tensorboard()
    again.log("pretrain_generator", step=20, loss=4.5)
    again._tensorboard["pretrain_generator"].close()
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard" / "pretrain_generator"))
    events.Reload()
    assert [(s.step, s.value) for s in events.Scalars("pretrain_generator/loss")] == [(10, 5.0), (20, 4.5)]


def test_a_command_stopped_by_a_missing_stage_leaves_no_tensorboard_folder(tmp_path, capsys):
    """The event folder appears with the first record: a stage stopped before it (no tokenizer
    yet) left tensorboard/ behind, and prepare then refused the folder as not a run directory."""
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from support import dialogues, write_jsonl

    corpus = write_jsonl(tmp_path / "c.jsonl", dialogues(20))
    run = tmp_path / "r"
    assert run_cli("pretrain", "generator", "--config", "tiny", "--run-dir", run, "runtime.tensorboard=true") == 2
    assert "no tokenizer yet" in one_line(capsys.readouterr().err)
    assert not (run / "tensorboard").exists()
    assert run_cli("prepare", "--config", "tiny", "--run-dir", run, "data.corpus=jsonl", f"data.path={corpus}") == 0
