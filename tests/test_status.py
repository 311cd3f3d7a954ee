"""`seqgan status`: each stage as its checkpoint holds it, the lock holder, what comes next."""

import fcntl
import json
import os
import shutil

from support import prepared_copy, run_cli

from seqgan.rundir import RunDir, duration, read_lock_file
from seqgan.status import lock_holder, run_status


def _files(run: RunDir) -> dict:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(run.root.rglob("*")) if p.is_file()}


def _rows(status: dict) -> dict:
    return {r["stage"]: r for r in status["stages"]}


def test_durations_read_in_the_unit_that_suits_them():
    assert [duration(s) for s in (0.26, 147, 900, 5400)] == ["0.3 s", "147 s", "15 min", "1.5 h"]


def test_status_follows_a_run_stage_by_stage(tiny_run, tmp_path, capsys):
    run = prepared_copy(tiny_run, tmp_path / "r")
    assert run_cli("status", "--run-dir", run.root, "--json") == 0
    status = json.loads(capsys.readouterr().out)
    rows = _rows(status)
    assert status["kind"] == "dialogue" and status["running_pid"] is None
    assert rows["prepare"]["status"] == "done" and "vocabulary" in rows["prepare"]["detail"]
    assert [rows[s]["status"] for s in ("pretrain generator", "pretrain discriminator", "train (adversarial)",
                                        "evaluate")] == ["not started"] * 4
    assert status["next"] == f"seqgan run --run-dir {run.root} goes on from pretrain generator"

    assert run_cli("pretrain", "generator", "--run-dir", run.root, "pretrain.max_steps=3") == 0
    assert read_lock_file(run.root / ".lock") == (os.getpid(), "pretrain generator")  # the last holder named its stage
    capsys.readouterr()
    before = _files(run)
    assert run_cli("status", "--run-dir", run.root) == 0
    assert _files(run) == before  # it writes nothing, not even the lock file's pid
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if "pretrain generator" in ln)
    assert "done" in line and "(stopped by max_steps)" in line and "step 3," in line and "best valid NLL" in line
    assert "last record: pretrain_generator at" in text
    assert text.rstrip().endswith(f"next: seqgan run --run-dir {run.root} goes on from pretrain discriminator")

    # a command at work on the run: its pid, and the stage its lock names is the running one
    pid = os.getpid()
    with run.lock("train"):
        assert lock_holder(run) == (pid, "train")
        status = run_status(run)
        assert status["running_pid"] == pid and status["running_stage"] == "train"
        assert [r["stage"] for r in status["stages"] if r["status"] == "running"] == ["train (adversarial)"]
        assert status["next"] == f"a command (pid {pid}) is at work on the run: train"
    with run.lock("generate"):  # samples: no stage's counters move, none is running
        status = run_status(run)
        assert not [r for r in status["stages"] if r["status"] == "running"]
        assert status["next"] == f"a command (pid {pid}) is at work on the run: generate"
    with run.lock():  # a lock that names no stage: the first stage not done
        assert lock_holder(run) == (pid, "")
        status = run_status(run)
        assert [r["stage"] for r in status["stages"] if r["status"] == "running"] == ["pretrain discriminator"]
        assert status["next"] == f"a command (pid {pid}) is at work on the run"
    fd = os.open(run.root / ".lock", os.O_RDWR | os.O_TRUNC)  # an older version's lock: the pid alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, str(pid).encode())
        assert lock_holder(run) == (pid, "")
    finally:
        os.close(fd)
    assert lock_holder(run) is None  # and status did not keep the lock from the next command

    # an evaluation older than a generator checkpoint is stale
    run.eval_path.write_text("{}")
    best = run.checkpoint("generator", "best")
    os.utime(best, (best.stat().st_atime, run.eval_path.stat().st_mtime + 10))
    row = _rows(run_status(run))["evaluate"]
    assert row["status"] == "stale" and "older than the generator checkpoint" in row["detail"]

    # a damaged checkpoint is reported as damaged, not a traceback; a record whose time is no clock time is left out
    run.log("odd", time=1e300)
    assert run_cli("status", "--run-dir", run.root) == 0 and "last record" not in capsys.readouterr().out
    run.checkpoint("generator").write_bytes(os.urandom(200))
    row = _rows(run_status(run))["pretrain generator"]
    assert row["status"] == "damaged" and "is not a readable checkpoint" in row["detail"]

    # prepared files gone or replaced: prepare is damaged, not done, and the next step remakes them
    run.split_path("test").rename(run.root / "test.npz.away")
    status = run_status(run)
    row = _rows(status)["prepare"]
    assert row["status"] == "damaged" and row["detail"].startswith("data/test.npz missing")
    assert status["next"] == f"seqgan prepare --force --run-dir {run.root} makes the prepared files again"
    (run.root / "test.npz.away").rename(run.split_path("test"))
    model = run.spm_model.read_bytes()
    run.spm_model.write_bytes(model + b"\0")
    assert "tokenizer/spm.model is not the one prepared" in _rows(run_status(run))["prepare"]["detail"]
    run.spm_model.write_bytes(model)
    assert _rows(run_status(run))["prepare"]["status"] == "done"


def test_status_of_an_oracle_experiment(tmp_path, capsys):
    run = RunDir(tmp_path / "o")
    assert run_cli("oracle", "--config", "tiny", "--run-dir", run.root, "oracle.mle_epochs=2",
                   "oracle.d_pretrain_rounds=1", "oracle.adv_rounds=0") == 0
    capsys.readouterr()
    status = run_status(run)
    rows = _rows(status)
    assert status["kind"] == "oracle" and status["next"] == "complete: see oracle.json"
    assert rows["oracle MLE"]["status"] == "done" and rows["oracle MLE"]["done"] == 2
    assert "NLL-oracle " in rows["oracle MLE"]["detail"] and rows["oracle MLE"]["detail"].endswith(" at 1")
    assert rows["oracle D pretraining"]["status"] == "done" and rows["oracle D pretraining"]["done"] == 1
    assert rows["oracle adversarial"]["status"] == "done" and rows["oracle adversarial"]["total"] == 0

    # stopped after its first MLE epoch: the phases after it have not started
    import torch

    ckpt = torch.load(run.checkpoint("oracle"), weights_only=True)
    ckpt["state"].update(epoch=1, d_round=0, complete=False, curve=[])
    torch.save(ckpt, run.checkpoint("oracle"))
    (run.root / "oracle.json").unlink()
    status = run_status(run)
    assert [(r["status"], r.get("done")) for r in status["stages"]] == [("stopped", 1), ("not started", None),
                                                                        ("not started", None)]
    assert status["next"] == f"seqgan oracle --run-dir {run.root} goes on from oracle MLE"
    # in its first epoch (config.yaml written, nothing saved yet) it is an oracle experiment all the same
    shutil.rmtree(run.root / "checkpoints")
    status = run_status(run)
    assert status["kind"] == "oracle" and [r["status"] for r in status["stages"]] == ["not started"] * 3


def test_status_shows_the_evaluation_of_the_round_in_progress(tmp_path):
    """An adversarial round is evaluated minutes before its checkpoint: status reads that figure
    from metrics.jsonl, and a figure the checkpoint holds too is not counted twice."""
    import torch

    run = RunDir(tmp_path / "o")
    assert run_cli("oracle", "--config", "tiny", "--run-dir", run.root, "oracle.mle_epochs=1", "oracle.d_pretrain_rounds=1",
                   "oracle.adv_rounds=2", "oracle.eval_every=1") == 0
    ckpt = torch.load(run.checkpoint("oracle"), weights_only=True)
    curve = [c for c in ckpt["state"]["curve"] if c["phase"] == "adversarial"]
    assert [c["index"] for c in curve] == [0, 1]
    row = _rows(run_status(run))["oracle adversarial"]
    low = min(curve, key=lambda c: c["nll_oracle"])
    assert row["detail"].endswith(f"NLL-oracle {curve[1]['nll_oracle']:.3f} at 1, lowest {low['nll_oracle']:.3f} "
                                  f"at {low['index']}")
    # the checkpoint of round 1 (0-based round 1 evaluated, not yet saved): metrics.jsonl has its figure
    ckpt["state"].update(adv_round=1, complete=False, curve=ckpt["state"]["curve"][:-1])
    torch.save(ckpt, run.checkpoint("oracle"))
    assert _rows(run_status(run))["oracle adversarial"] == {**row, "status": "stopped", "done": 1,
                                                            "detail": row["detail"].replace("round 2 of 2",
                                                                                            "round 1 of 2")}


def test_status_refuses_what_is_not_a_run(tmp_path, capsys):
    assert run_cli("status", "--run-dir", tmp_path / "nothing") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"seqgan status: error: {tmp_path / 'nothing'} does not exist: no run there yet"]
    (tmp_path / "folder").mkdir()
    assert run_cli("status", "--run-dir", tmp_path / "folder") == 2
    assert "is not a run directory (no config.yaml)" in capsys.readouterr().err
    assert run_cli("status", "--run-dir", tmp_path / "folder", "pretrain.epochs=3") == 2
    assert "status reads a run as it is saved: it takes --run-dir and --json only" in capsys.readouterr().err
    for extra in (["--config", "tiny"], ["--seed", "3"]):
        assert run_cli("status", "--run-dir", tmp_path / "folder", *extra) == 2
        assert f"unrecognized arguments: {extra[0]}" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists() and os.listdir(tmp_path / "folder") == []
