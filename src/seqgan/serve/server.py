"""Run the app with uvicorn on a socket bound here, so that a busy port is one clear line."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable

import uvicorn

from seqgan.config import Config
from seqgan.errors import SeqGANError
from seqgan.rundir import RunDir
from seqgan.serve.app import ServeConfig, create_app
from seqgan.serve.batcher import MicroBatcher


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise SeqGANError(f"cannot resolve --host {host!r}: {e}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise SeqGANError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class _Server(uvicorn.Server):
    """uvicorn's server, whose graceful shutdown first answers the requests still queued for a
    batch with 503 (uvicorn would cancel them when its grace period ends: a plain-text 500 and a
    traceback each) and waits only for the batch being computed."""

    def __init__(self, config: uvicorn.Config, batcher: MicroBatcher):
        super().__init__(config)
        self.batcher = batcher

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.batcher.refuse_waiting()
        await super().shutdown(sockets=sockets)


class _Stopped(Exception):
    """SIGINT/SIGTERM after uvicorn's graceful shutdown (it raises the signal again once done)."""


def _stopped(signum, frame) -> None:
    raise _Stopped


def serve(cfg: Config, run: RunDir, scfg: ServeConfig, say: Callable[..., None] = print) -> dict:
    """Load the generators, listen, and serve until SIGINT/SIGTERM; return the batching counters.

    uvicorn handles the signals while it runs (a graceful shutdown), then raises the signal again
    for the handler it found; that handler is ours, so a stop ends here and returns the counters.
    """
    app = create_app(cfg, run, scfg)
    sock = bind(scfg.host, scfg.port)
    url = url_of(sock)
    generators = app.state.engine.generators()
    gens = ", ".join(w for w, g in generators.items() if g["available"])
    say(f"seqgan serve: {url} ({gens} generator{'s' if ',' in gens else ''} of {run.root}; "
        f"batches of up to {scfg.max_batch_size}, {scfg.max_wait_ms:g} ms wait); Ctrl-C stops")
    for which, g in generators.items():
        if not g["available"]:  # e.g. a checkpoint that does not load: said now, not only in /v1/info
            say(f"seqgan serve: serving without the {which} generator: {g['reason']}")
    server = _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                    # the batch being computed finishes (a big beam batch on a
                                    # busy CPU can take seconds); a second Ctrl-C stops at once
                                    timeout_graceful_shutdown=30), app.state.batcher)
    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, _stopped) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        server.run(sockets=[sock])
    except _Stopped:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sock.close()
    return {"url": url, **app.state.batcher.stats()}
