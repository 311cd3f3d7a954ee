"""SIGINT / SIGTERM during training: finish the current step, save a checkpoint, then stop.

A second signal while the first is being handled interrupts at once (the last checkpoint on disk
stays valid: checkpoints are written atomically).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType


class Interrupted(Exception):
    """Raised after a stage saved its checkpoint in response to SIGINT/SIGTERM."""

    def __init__(self, signame: str, checkpoint: str | None):
        saved = f"checkpoint saved to {checkpoint}" if checkpoint else "nothing saved yet (the stage starts over)"
        super().__init__(f"{signame} received: {saved}; run the same command to resume")
        self.exit_code = 128 + int(getattr(signal, signame, signal.SIGINT))


class StopNow(KeyboardInterrupt):
    """A second SIGINT/SIGTERM: stop at once; the exit code is the signal's (130 or 143)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


def signal_name(stop: StopFlag | None) -> str:
    """The signal a stage stops for; SIGTERM when another rank of a distributed run received it."""
    return stop.signame if stop is not None and stop.signame else "SIGTERM"


def _say(text: str) -> None:
    """A line on stderr from a signal handler, by the main process only. A handler runs between two
    bytecodes of the main thread, which may be inside a write to stderr (a progress bar): the
    buffered stream then refuses a second writer, and the line is dropped rather than the step."""
    from seqgan.rundir import main_process

    if not main_process():
        return
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (RuntimeError, OSError, ValueError, AttributeError):  # reentrant, closed, or no stderr at all
        pass


class StopFlag:
    """Installs SIGINT/SIGTERM handlers for the duration of a `with` block (main thread only)."""

    def __init__(self) -> None:
        self.signame: str | None = None
        self._old: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signame is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signame is not None:  # second signal: stop now
            raise StopNow(signum)
        self.signame = signal.Signals(signum).name
        _say(f"{self.signame} received: the step, epoch or round in progress finishes and is saved, then the command "
             f"stops (another {self.signame} stops it at once; the last checkpoint stays)")

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)  # type: ignore[arg-type]
        self._old.clear()
        if exc_type is None and self.signame is not None:
            # the signal came after the stage's last check (e.g. during its final validation): the
            # stage finished and saved; stop here rather than let `seqgan run` start the next one
            raise Interrupted(self.signame, "the run directory (the stage had finished)")
