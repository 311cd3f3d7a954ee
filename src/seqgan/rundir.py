"""The run directory: the only state of a run (DESIGN.md, "A run directory").

Files are written atomically (temp file, fsync, rename) so that a crash never leaves a
half-written file behind; `metrics.jsonl` is append-only, one JSON object per line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from seqgan import config as C
from seqgan.errors import ConfigError, SeqGANError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


# the temp files of atomic_write_bytes: mkstemp's ".NAME." + 8 random characters + ".tmp"
_TEMP_FILE = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def remove_stale_temp_files(root: Path) -> list[Path]:
    """Delete temp files that a killed process left behind (`.NAME.XXXXXXXX.tmp` of
    `atomic_write_bytes`), in a run directory only (one with config.yaml): a folder given as
    --run-dir by mistake keeps its files, whatever their names.

    Called while holding the run's lock, so no stage is mid-write. `seqgan export` writes into
    RUN_DIR/export without the lock (it may run beside training), so that folder is left alone.
    """
    root = Path(root)
    if not (root / "config.yaml").is_file():
        return []
    stale = [p for p in root.rglob(".*.tmp") if _TEMP_FILE.fullmatch(p.name) and p.is_file()
             and p.relative_to(root).parts[0] != "export"]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class RunDir:
    """Paths of one run directory plus its config, metrics log and lock."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._tensorboard: dict = {}  # a SummaryWriter per curve set, from its first record after enable_tensorboard()
        self._tensorboard_on = False

    # paths -----------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    @property
    def spm_model(self) -> Path:
        return self.tokenizer_dir / "spm.model"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def split_path(self, split: str) -> Path:
        return self.data_dir / f"{split}.npz"

    def read_manifest(self) -> dict | None:
        """data/manifest.json (what `seqgan prepare` built, with the tokenizer's hash), or None."""
        try:
            manifest = json.loads((self.data_dir / "manifest.json").read_text())
        except (OSError, ValueError, RecursionError):
            return None
        shape = {"key": str, "tokenizer_hash": str, "summary": dict}  # as prepare writes it
        if not isinstance(manifest, dict) or any(not isinstance(manifest.get(k), t) for k, t in shape.items()) \
                or not isinstance(manifest.get("data_seed", 0), int):
            return None  # damaged: the run reads as not prepared
        return manifest

    def checkpoint(self, stage: str, which: str = "last") -> Path:
        """stage: generator | discriminator | adversarial; which: last | best."""
        return self.root / "checkpoints" / stage / f"{which}.pt"

    @property
    def samples_dir(self) -> Path:
        return self.root / "samples"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def eval_path(self) -> Path:
        return self.root / "eval.json"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    # config ------------------------------------------------------------------
    def read_config(self) -> dict | None:
        if not self.config_path.exists():
            return None
        stored = C.read_yaml(self.config_path)
        if not stored:
            raise ConfigError(f"{self.config_path} is empty (a run directory's config.yaml holds its whole config): "
                              "put it back, or use another --run-dir")
        return stored

    def write_config(self, cfg: C.Config) -> None:
        if not main_process():
            return
        text = yaml.safe_dump(C.to_dict(cfg), sort_keys=False)
        atomic_write_text(self.config_path, text)

    def check_new_run_allowed(self, oracle: bool = False) -> None:
        """A run starts in a new or empty folder, or goes on in a run directory of its kind: a
        folder with other files and no config.yaml is not one, and a run would write over them
        (prepare replaces data/ and tokenizer/); an oracle experiment and a dialogue run each
        take config.yaml for their own, so neither starts in the other's folder."""
        if self.config_path.exists():
            dialogue = [p for p in (self.data_dir, self.tokenizer_dir, *(self.checkpoint(s).parent for s in
                                    ("generator", "discriminator", "adversarial"))) if p.exists()]
            if oracle and dialogue:
                raise SeqGANError(f"{self.root} holds a dialogue run ({dialogue[0].relative_to(self.root)}/), "
                                  "not an oracle experiment; use a new or empty --run-dir")
            if not oracle and (self.checkpoint("oracle").parent.exists() or (self.root / "oracle.json").exists()):
                raise SeqGANError(f"{self.root} holds an oracle experiment, not a dialogue run; "
                                  "use a new or empty --run-dir")
            return
        if not self.root.is_dir():
            return
        others = sorted(p.name for p in self.root.iterdir() if not p.name.startswith("."))
        if others:
            shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            raise SeqGANError(f"{self.root} is not a run directory (no config.yaml) and is not empty ({shown}); "
                              "use a new or empty --run-dir")

    def check_config(self, cfg: C.Config, sections: tuple[str, ...] = C.FROZEN_SECTIONS,
                     preset: str | None = None) -> list[str]:
        """Refuse a config whose frozen `sections` differ from the run's; return other differing keys.
        `preset`: the --config the values came from (the message says to drop it, not overrides)."""
        stored = self.read_config()
        if stored is None:
            return []
        new = C.to_dict(cfg)
        frozen = C.diff(stored, new, sections)
        if frozen:
            shown = ", ".join(f"{k} ({C.flatten(stored).get(k)!r} -> {C.flatten(new).get(k)!r})" for k in frozen[:5])
            more = f" and {len(frozen) - 5} more" if len(frozen) > 5 else ""
            raise ConfigError(
                f"config conflicts with the run in {self.root}: {shown}{more}; use another --run-dir, or "
                + (f"drop these overrides or --config {preset} (without it the run's config.yaml is used)"
                   if preset else "drop these overrides")
            )
        return C.diff(stored, new)

    # metrics -----------------------------------------------------------------
    def log(self, stage: str, **values: Any) -> dict:
        """Append one JSON line to metrics.jsonl (stage, time, values)."""
        rec = {"stage": stage, "time": round(time.time(), 3), **values}
        if not main_process():
            return rec
        self.root.mkdir(parents=True, exist_ok=True)
        line = to_json(rec) + "\n"
        with open(self.metrics_path, "a+b") as f:
            if f.tell() > 0:  # a crash may have left a torn last line: do not glue this record to it
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = "\n" + line
            f.write(line.encode("utf-8"))
            f.flush()
        if self._tensorboard_on:
            self._write_tensorboard(stage, values)
        return rec

    def _write_tensorboard(self, stage: str, values: dict) -> None:
        """Each number of a record as a scalar at the record's step, round, epoch or index; a
        record with a phase (the oracle's mle, d_pretrain, adversarial) tags its own curves.

        Each stage (and oracle phase) writes to a folder of its own, tensorboard/STAGE[_PHASE],
        whose writer starts at its first record's step with `purge_step`: a resumed stage logs
        again the steps after its last checkpoint, and TensorBoard then hides the abandoned
        attempt's points from there on instead of drawing the curve back over itself.
        """
        phase = values.get("phase")
        prefix = f"{stage}/{phase}" if isinstance(phase, str) else stage
        step = next((values[k] for k in ("step", "round", "epoch", "index") if isinstance(values.get(k), int)), 0)
        if phase == "adversarial" and "index" not in values and isinstance(values.get("round"), int):
            step -= 1  # the oracle's round r logs round=r+1 once done; its evaluation, index=r
        writer = self._tensorboard.get(prefix)
        if writer is None:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.root / "tensorboard" / prefix.replace("/", "_")), purge_step=step)
            self._tensorboard[prefix] = writer
        for k, v in values.items():
            if isinstance(v, int | float) and not isinstance(v, bool) and k not in ("step", "round", "index"):
                writer.add_scalar(f"{prefix}/{k}", v, step)
        writer.flush()

    def enable_tensorboard(self) -> None:
        """Also write every logged number to TensorBoard event files in RUN_DIR/tensorboard/,
        from the first record on (a command that stops before it logs leaves no folder behind)."""
        if not main_process():
            return
        try:
            import torch.utils.tensorboard  # noqa: F401 - a missing package is said now, not at the first record
        except ImportError:
            raise ConfigError("runtime.tensorboard=true needs the tensorboard package: "
                              "pip install 'seqgan[tensorboard]'") from None
        self._tensorboard_on = True

    def read_metrics(self, stage: str | None = None) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        out = []
        # bytes that are not UTF-8 (a crash mid-write, a disk error) spoil their line only
        for line in self.metrics_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a line cut short by a crash, or not one this tool writes
            if not isinstance(rec, dict):
                continue  # not a record this tool writes
            if stage is None or rec.get("stage") == stage:
                out.append(rec)
        return out

    # lock --------------------------------------------------------------------
    def lock(self, stage: str = "") -> RunLock | contextlib.nullcontext:
        """The run's writer lock, naming the stage that takes it (`seqgan status` shows it); in a
        distributed run only rank 0 writes, so only it locks."""
        return RunLock(self.root / ".lock", stage) if main_process() else contextlib.nullcontext()


def main_process() -> bool:
    """False on ranks other than 0 of a torchrun world (they never write run files)."""
    return int(os.environ.get("WORLD_SIZE", "1")) <= 1 or int(os.environ.get("RANK", "0")) == 0


def duration(seconds: float) -> str:
    """0.26 -> '0.3 s', 147 -> '147 s', 900 -> '15 min', 5400 -> '1.5 h'."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 600:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def _json_default(x: Any) -> Any:
    if hasattr(x, "item"):
        return _finite(x.item())
    return str(x)


def _finite(x: Any) -> Any:
    """x with every NaN or infinite float (in dicts, lists and tuples) replaced by None."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def to_json(obj: Any, **kwargs: Any) -> str:
    """Strict JSON (RFC 8259): a NaN or infinite number, which has no JSON form, is written null."""
    return json.dumps(_finite(obj), default=_json_default, allow_nan=False, **kwargs)


class RunLock:
    """An exclusive advisory lock so two processes cannot write one run at once. The lock file
    holds the holder's pid, and on a second line the stage it works on."""

    def __init__(self, path: Path, stage: str = ""):
        self.path, self.stage = path, stage
        self.fd: int | None = None
        self.created: list[Path] = []  # folders this lock made, innermost first

    def __enter__(self) -> RunLock:
        folder = self.path.parent
        self.created = [p for p in (folder, *folder.parents) if not p.exists()]
        self.made_file = not self.path.exists()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:  # a path under a file, in /proc, read-only, not ours: nothing was written
            raise SeqGANError(f"cannot use {self.path.parent} as a run directory: {e.strerror}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            pid, stage = read_lock_file(self.path)
            holder = f" (pid {pid}{f', at {stage}' if stage else ''})" if pid else ""
            raise SeqGANError(f"run directory {self.path.parent} is in use by another process{holder}") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n{self.stage}\n".encode())
        remove_stale_temp_files(self.path.parent)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            # a command that stopped before writing (e.g. `seqgan train --run-dir typo`) leaves no
            # folder behind; the lock file goes while still held, so no one else can have taken it
            # nor a lock file in a folder that did not become a run directory (a --run-dir typo
            # naming some other folder)
            with contextlib.suppress(OSError):
                if self.created and os.listdir(self.path.parent) == [self.path.name]:
                    self.path.unlink()
                    for folder in self.created:
                        folder.rmdir()
                elif self.made_file and not (self.path.parent / "config.yaml").exists():
                    self.path.unlink()
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def read_lock_file(path: Path) -> tuple[int, str]:
    """(pid, stage) as a lock file holds them; (0, "") for what cannot be read, "" for no stage
    (a lock taken by an older version holds the pid alone)."""
    try:
        lines = path.read_text().splitlines()
        pid = int(lines[0].strip())
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return 0, ""
    return pid, lines[1].strip() if len(lines) > 1 else ""
