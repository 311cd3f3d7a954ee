"""Run the app with uvicorn on a socket bound here, so that a busy port is one clear line."""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn

from seqgan.config import Config
from seqgan.errors import SeqGANError
from seqgan.rundir import RunDir
from seqgan.serve.app import ServeConfig, create_app


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


def serve(cfg: Config, run: RunDir, scfg: ServeConfig, say: Callable[..., None] = print) -> dict:
    """Load the generators, listen, and serve until SIGINT/SIGTERM; return the batching counters."""
    app = create_app(cfg, run, scfg)
    sock = bind(scfg.host, scfg.port)
    url = url_of(sock)
    gens = ", ".join(w for w, g in app.state.engine.generators().items() if g["available"])
    say(f"seqgan serve: {url} ({gens} generator{'s' if ',' in gens else ''} of {run.root}; "
        f"batches of up to {scfg.max_batch_size}, {scfg.max_wait_ms:g} ms wait); Ctrl-C stops")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                           timeout_graceful_shutdown=5))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return {"url": url, **app.state.batcher.stats()}
