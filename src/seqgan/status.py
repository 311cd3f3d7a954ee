"""`seqgan status`: where a run stands, for a run that takes hours and resumes.

What each stage has saved (the counters of its last checkpoint, against the totals in
config.yaml), whether a command is at work on the run (it holds the run's lock), the last
record in metrics.jsonl, and the command that goes on. It only reads: it takes no lock and
writes nothing, so it may be called while a stage runs.
"""

from __future__ import annotations

import fcntl
import math
import os
import time
from pathlib import Path

from seqgan import config as C
from seqgan.errors import SeqGANError
from seqgan.rundir import RunDir, duration, read_lock_file

# checkpoint folder -> the command that trains it
DIALOGUE_STAGES = {"generator": "pretrain generator", "discriminator": "pretrain discriminator",
                   "adversarial": "train"}
# the stage a lock names (RunDir.lock) -> its row, where the names differ
LOCK_ROWS = {"train": "train (adversarial)"}


def lock_holder(run: RunDir) -> tuple[int, str] | None:
    """(pid, stage) of the command that holds the run's lock (pid 0 when it cannot be read, stage
    "" when the lock names none), or None when no command holds it. A shared lock is tried and
    dropped at once: a command starting in those microseconds would be told the run is in use,
    as with any other holder."""
    path = run.root / ".lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None  # no lock file: no command has ever locked the run, or it removed its own
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return read_lock_file(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _saved_state(path: Path) -> tuple[dict | None, str | None]:
    """(state counters, None) of a checkpoint, (None, why) when it cannot be read, (None, None) when absent.
    The tensors are mapped, not read: a large checkpoint costs milliseconds."""
    from seqgan.training.checkpoint import load_checkpoint

    if not path.exists():
        return None, None
    try:
        state = load_checkpoint(path, mmap=True).get("state")
    except SeqGANError as e:
        return None, str(e)
    return (state, None) if isinstance(state, dict) else (None, f"{path} holds no stage counters")


def _count(state: dict | None, key: str) -> int:
    value = (state or {}).get(key, 0)
    return value if isinstance(value, int) else 0


def _number(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _stage(name: str, state: dict | None, damaged: str | None, done: int, total: int | None, unit: str,
           detail: str = "") -> dict:
    """One stage's row: its status and what its counters say."""
    if damaged:
        return {"stage": name, "status": "damaged", "detail": damaged}
    if state is None:
        return {"stage": name, "status": "not started", "detail": ""}
    status = "done" if state.get("complete") else "stopped"
    reason = state.get("reason")
    text = f"{unit} {done:,}" + (f" of {total:,}" if total is not None else "")
    if status == "done" and isinstance(reason, str) and reason != "epochs":
        text += f" (stopped by {reason})"
    seconds = state.get("seconds")
    if isinstance(seconds, int | float) and seconds > 0:
        text += f", {duration(seconds)}"
    return {"stage": name, "status": status, "done": done, "total": total,
            "seconds": round(seconds, 1) if isinstance(seconds, int | float) else None,
            "detail": text + (f"; {detail}" if detail else "")}


def _dialogue_stages(run: RunDir, cfg: C.Config) -> list[dict]:
    from seqgan.data.prepare import prepared_files_problem

    manifest = run.read_manifest()
    if manifest is None:
        rows = [{"stage": "prepare", "status": "not started" if not run.data_dir.exists() else "damaged",
                 "detail": "" if not run.data_dir.exists() else "data/manifest.json is missing or damaged"}]
    elif problem := prepared_files_problem(run, manifest):
        rows = [{"stage": "prepare", "status": "damaged",
                 "detail": f"{problem}; `seqgan prepare --force --run-dir {run.root}` makes the prepared files again"}]
    else:
        summary = manifest["summary"]
        pairs = summary.get("pairs") if isinstance(summary.get("pairs"), dict) else {}
        rows = [{"stage": "prepare", "status": "done", "detail": f"{_number(summary.get('dialogues'))} dialogues; pairs "
                 + " / ".join(f"{k} {_number(v)}" for k, v in pairs.items())
                 + f"; vocabulary {_number(summary.get('vocab_size'))}"}]
    p, dc, a = cfg.pretrain, cfg.discriminator, cfg.adversarial
    state, damaged = _saved_state(run.checkpoint("generator"))
    nll = (state or {}).get("best_valid_nll")
    best = f", best valid NLL {nll:.3f} (perplexity {math.exp(min(nll, 700)):.1f})" \
        if isinstance(nll, float) and math.isfinite(nll) else ""
    rows.append(_stage("pretrain generator", state, damaged, _count(state, "epoch"), p.epochs, "epoch",
                       f"step {_count(state, 'step'):,}{best}"))
    state, damaged = _saved_state(run.checkpoint("discriminator"))
    auc = (state or {}).get("best_auc")
    rows.append(_stage("pretrain discriminator", state, damaged, _count(state, "round"), dc.rounds, "round",
                       f"best valid AUC {auc:.3f}" if isinstance(auc, float) and auc >= 0 else ""))
    state, damaged = _saved_state(run.checkpoint("adversarial"))
    best = (state or {}).get("best")
    rows.append(_stage("train (adversarial)", state, damaged, _count(state, "step"), a.steps, "step",
                       f"best {a.best_metric} {best:.3f}" if isinstance(best, float) else ""))
    rows.append(_evaluation(run))
    return rows


def _evaluation(run: RunDir) -> dict:
    """eval.json, and whether a generator checkpoint is newer than it (evaluate again)."""
    if not run.eval_path.exists():
        return {"stage": "evaluate", "status": "not started", "detail": ""}
    written = run.eval_path.stat().st_mtime
    newer = [s for s in ("generator", "adversarial") if run.checkpoint(s, "best").exists()
             and run.checkpoint(s, "best").stat().st_mtime > written]
    detail = f"eval.json of {time.strftime('%Y-%m-%d %H:%M', time.localtime(written))}"
    if newer:
        return {"stage": "evaluate", "status": "stale",
                "detail": f"{detail}, older than the {' and '.join(newer)} checkpoint: evaluate again"}
    return {"stage": "evaluate", "status": "done", "detail": detail}


def _oracle_stages(run: RunDir, cfg: C.Config, records: list) -> list[dict]:
    o = cfg.oracle
    state, damaged = _saved_state(run.checkpoint("oracle"))
    if damaged:
        return [_stage("oracle", None, damaged, 0, None, "")]
    state = state or {}  # an experiment in its first epoch has saved nothing yet
    seconds = state.get("seconds") if isinstance(state.get("seconds"), dict) else {}
    curve = state.get("curve") if isinstance(state.get("curve"), list) else []
    curve = [c for c in curve if isinstance(c, dict) and isinstance(c.get("nll_oracle"), float)]
    # an adversarial round is evaluated after its generator step, minutes before its checkpoint:
    # metrics.jsonl has that figure first (a resume from the checkpoint evaluates the round again)
    saved = _count(state, "adv_round")
    curve += [r for r in records if isinstance(r, dict) and r.get("stage") == "oracle"
              and r.get("phase") == "adversarial" and isinstance(r.get("index"), int) and r["index"] >= saved
              and isinstance(r.get("nll_oracle"), float)][-1:]
    rows, reached = [], True  # a phase starts once the one before it is done
    for name, key, total, unit, phase in (("oracle MLE", "epoch", o.mle_epochs, "epoch", "mle"),
                                          ("oracle D pretraining", "d_round", o.d_pretrain_rounds, "round", "d_pretrain"),
                                          ("oracle adversarial", "adv_round", o.adv_rounds, "round", "adversarial")):
        done = _count(state, key)
        points = [c for c in curve if c.get("phase") == phase]
        detail = ""
        if points:
            last, low = points[-1], min(points, key=lambda c: c["nll_oracle"])
            detail = (f"NLL-oracle {last['nll_oracle']:.3f} at {last.get('index')}, "
                      f"lowest {low['nll_oracle']:.3f} at {low.get('index')}")
        started = reached and (done > 0 or bool(points) or total == 0)
        phase_state = {"complete": done >= total, "seconds": seconds.get(phase)} if started else None
        rows.append(_stage(name, phase_state, None, done, total, unit, detail))
        reached = started and done >= total
    return rows


def run_status(run: RunDir) -> dict:
    """The run's stages, who holds it, its last record and the command that goes on."""
    if not run.root.is_dir():
        raise SeqGANError(f"{run.root} does not exist: no run there yet")
    stored = run.read_config()
    if stored is None:
        raise SeqGANError(f"{run.root} is not a run directory (no config.yaml)")
    cfg = C.from_dict(stored)
    # prepare writes a dialogue run's config.yaml with its data; an oracle experiment writes its own first
    oracle = not any(p.exists() for p in (run.data_dir, run.tokenizer_dir, *(run.checkpoint(s).parent
                                                                            for s in DIALOGUE_STAGES)))
    records = run.read_metrics()
    rows = _oracle_stages(run, cfg, records) if oracle else _dialogue_stages(run, cfg)
    holder = lock_holder(run)
    pid, stage = holder or (None, "")
    last = records[-1] if records else None
    pending = [r for r in rows if r["status"] != "done"]
    if holder is not None:
        # the row of the stage the holder names; a lock that names none (an older version's) or
        # the whole oracle experiment: the first stage not done. `generate` trains no stage.
        at = [r for r in rows if r["stage"] == LOCK_ROWS.get(stage, stage)] if stage and stage != "oracle" else pending[:1]
        for r in at:
            r["status"] = "running"
    command = "oracle" if oracle else "run"
    if holder is not None:
        who = f"a command (pid {pid})" if pid else "a command"
        next_step = f"{who} is at work on the run" + (f": {stage}" if stage else "")
    elif pending and pending[0]["stage"] == "prepare" and pending[0]["status"] == "damaged" and run.data_dir.exists():
        # `seqgan run` would refuse it for the checkpoints' sake; the same corpus makes the same files
        next_step = f"seqgan prepare --force --run-dir {run.root} makes the prepared files again"
    elif pending:
        next_step = f"seqgan {command} --run-dir {run.root} goes on from {pending[0]['stage']}"
    else:
        next_step = f"complete: seqgan chat --run-dir {run.root}" if not oracle else "complete: see oracle.json"
    out = {"run": str(run.root), "kind": "oracle" if oracle else "dialogue", "running_pid": pid,
           "running_stage": stage or None, "stages": rows, "next": next_step}
    when = last.get("time") if isinstance(last, dict) else None
    if isinstance(when, int | float) and 0 <= when < 1e11:  # a clock time (a hand-edited line may hold anything)
        out["last_record"] = {"stage": last.get("stage"), "time": when,
                              "age_seconds": round(max(0.0, time.time() - when), 1)}
    return out


def format_status(status: dict) -> str:
    """The human table: a line per stage, then the last record and what comes next."""
    lines = [f"{status['run']} ({status['kind']} run; each stage as its last checkpoint holds it)"]
    width = max(len(r["stage"]) for r in status["stages"])
    for r in status["stages"]:
        detail = f"  {r['detail']}" if r["detail"] else ""
        lines.append(f"  {r['stage']:<{width}}  {r['status']:<11}{detail}".rstrip())
    last = status.get("last_record")
    if last:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["time"]))
        lines.append(f"  last record: {last['stage']} at {when} ({duration(last['age_seconds'])} ago)")
    lines.append(f"  next: {status['next']}")
    return "\n".join(lines) + "\n"
