"""The FastAPI app: POST /v1/respond, GET /v1/info, GET /healthz and the chat page at /.

Every error is `{"error": "one line"}` with a 4xx status for anything the client sent (a 500
only for a bug). Model work runs in the batcher's single worker thread, never on the loop.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seqgan import __version__, artifacts
from seqgan import config as C
from seqgan.chat import Responder, encode_context
from seqgan.config import Config
from seqgan.errors import SeqGANError
from seqgan.models.sampling import MIN_TEMPERATURE, MIN_TOP_P
from seqgan.rundir import RunDir
from seqgan.serve import schemas
from seqgan.serve.batcher import MicroBatcher, Overloaded, ShuttingDown
from seqgan.serve.schemas import Limits, RespondRequest, describe

GENERATORS = ("pretrained", "adversarial")
STATIC = {  # served name -> (file in static/, media type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
    "/static/chat.css": ("chat.css", "text/css; charset=utf-8"),
}
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
}


@dataclass
class ServeConfig:
    """Server settings (`seqgan serve` flags)."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 16  # 1 = no batching
    max_wait_ms: float = 5.0  # how long the oldest request may wait for others to join its batch
    max_context_turns: int = 32
    max_context_chars: int = 4000
    max_body_bytes: int = 65536
    max_queue: int = 1024  # requests waiting at once; more get 503

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SeqGANError(f"--port must be between 0 and 65535, got {self.port}")
        if not 1 <= self.max_batch_size <= 1024:
            raise SeqGANError(f"--max-batch-size must be between 1 and 1024, got {self.max_batch_size}")
        if not 0 <= self.max_wait_ms <= 10000:
            raise SeqGANError(f"--max-wait-ms must be between 0 and 10000, got {self.max_wait_ms}")
        if self.max_context_turns < 1 or self.max_context_chars < 1:
            raise SeqGANError("--max-context-turns and --max-context-chars must be positive")


class ApiError(Exception):
    """A request the server refuses: status code and one line for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


# --------------------------------------------------------------------------- the model side


class Engine:
    """The run's generators; `run_batch` answers one batch (in the worker thread)."""

    def __init__(self, cfg: Config, run: RunDir):
        self.cfg, self.run = cfg, run
        self.responders: dict[str, Responder] = {}
        self.missing: dict[str, str] = {}
        self.checkpoints: dict[str, str] = {}
        for which in GENERATORS:
            try:
                self.responders[which] = Responder(cfg, run, which)
                self.checkpoints[which] = str(artifacts.generator_path(run, which)[1])
            except SeqGANError as e:
                self.missing[which] = str(e)
        if not self.responders:
            raise SeqGANError(self.missing["pretrained"])
        self.max_len = cfg.model.generator.max_len

    def options(self, req: RespondRequest) -> tuple:
        """The batch key: the generator and the complete sampling options of a request."""
        s = self.cfg.sample
        beams = req.num_beams if req.num_beams is not None else s.num_beams
        strategy = req.strategy or ("beam" if req.num_beams is not None and req.num_beams > 1 else s.strategy)
        temperature = req.temperature if req.temperature is not None else s.temperature
        top_k = req.top_k if req.top_k is not None else s.top_k
        top_p = req.top_p if req.top_p is not None else s.top_p
        max_len = min(req.max_len if req.max_len is not None else s.max_len, self.max_len)
        # as the sampler clamps them, so that requests it treats alike share a batch
        if 0 < temperature < MIN_TEMPERATURE:
            temperature = MIN_TEMPERATURE
        top_p = max(top_p, MIN_TOP_P)
        return (req.generator, strategy, float(temperature), int(top_k), float(top_p), int(beams), int(max_len))

    def encode(self, req: RespondRequest) -> np.ndarray:
        """The request's context as the generator reads it (a SeqGANError when nothing is left);
        done per request, before batching, so that one bad context never fails a batch."""
        return encode_context(self.responders[req.generator].tokenizer, req.context, self.cfg)

    def run_batch(self, key: Hashable, contexts: list[np.ndarray]) -> list[dict]:
        which, strategy, temperature, top_k, top_p, num_beams, max_len = key  # type: ignore[misc]
        opts = dataclasses.replace(self.cfg.sample, strategy=strategy, temperature=temperature, top_k=top_k,
                                   top_p=top_p, num_beams=num_beams, max_len=max_len)
        out = self.responders[which].respond_ids(contexts, opts)
        for r in out:
            r["batch_size"] = len(contexts)
        return out

    def generators(self) -> dict[str, dict]:
        out = {}
        for which in GENERATORS:
            if which in self.responders:
                out[which] = {"available": True, "checkpoint": self.checkpoints[which]}
            else:
                out[which] = {"available": False, "reason": self.missing[which]}
        return out


# --------------------------------------------------------------------------- HTTP


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = error(413, f"the request body is larger than {self.max_bytes} bytes")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await too_large(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> Message:
            return body.pop() if body else await receive()

        await self.app(scope, replay, send)


def create_app(cfg: Config, run: RunDir, scfg: ServeConfig | None = None, engine: Engine | None = None) -> FastAPI:
    """The ASGI app serving `run`'s generators (loaded here, so errors come before listening)."""
    scfg = scfg or ServeConfig()
    scfg.validate()
    engine = engine or Engine(cfg, run)
    batcher = MicroBatcher(engine.run_batch, scfg.max_batch_size, scfg.max_wait_ms, scfg.max_queue)
    limits = Limits(max_context_turns=scfg.max_context_turns, max_context_chars=scfg.max_context_chars,
                    max_len=engine.max_len)
    static = {path: (resources.files("seqgan.serve").joinpath("static", name).read_bytes(), media)
              for path, (name, media) in STATIC.items()}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.close()

    app = FastAPI(title="seqgan", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine, app.state.batcher, app.state.limits = engine, batcher, limits
    app.add_middleware(BodyLimit, max_bytes=scfg.max_body_bytes)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {404: f"not found: {request.url.path}", 405: f"method {request.method} not allowed here"}
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        return error(exc.status_code, messages.get(exc.status_code, detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "; ".join(str(e.get("msg")) for e in exc.errors()) or "invalid request")

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        return error(500, "internal error")  # the server logs the traceback: Starlette raises it again

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.api_route("/v1/info", methods=["GET", "HEAD"])
    async def info() -> dict:
        sample = C.to_dict(cfg.sample)
        sample.pop("batch_size", None)
        return {
            "run": str(run.root),
            "version": __version__,
            "generators": engine.generators(),
            "sampling_defaults": sample,
            "limits": {
                "max_context_turns": limits.max_context_turns,
                "max_context_chars": limits.max_context_chars,
                "max_turn_chars": limits.max_turn_chars,
                "max_len": limits.max_len,
                "temperature": [0.0, schemas.MAX_TEMPERATURE],
                "top_p": "(0, 1]",
                "top_k": [0, schemas.MAX_TOP_K],
                "num_beams": [1, schemas.MAX_BEAMS],
                "max_body_bytes": scfg.max_body_bytes,
            },
            "batching": batcher.stats(),
            "config": C.to_dict(cfg),
        }

    @app.post("/v1/respond", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": RespondRequest.model_json_schema()}}}})
    async def respond(request: Request) -> dict[str, Any]:
        t0 = time.perf_counter()
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":  # not text/plain either: a page elsewhere could post that unasked
            raise ApiError(415, f"the request body must be JSON sent as application/json, not {media or 'untyped'}")
        raw = await request.body()
        try:
            req = RespondRequest.model_validate_json(raw, context={"limits": limits})
        except ValidationError as e:
            raise ApiError(*describe(e)) from None
        if req.generator not in engine.responders:
            raise ApiError(404, engine.missing[req.generator])
        try:
            ids = engine.encode(req)
        except SeqGANError as e:
            raise ApiError(422, str(e)) from None
        try:
            out = await batcher.submit(engine.options(req), ids)
        except (Overloaded, ShuttingDown) as e:
            raise ApiError(503, str(e)) from None
        except SeqGANError as e:
            raise ApiError(422, str(e)) from None
        return {"response": out["response"], "tokens": out["tokens"],
                "latency_ms": round((time.perf_counter() - t0) * 1000, 1),
                "generator": out["generator"], "batch_size": out["batch_size"]}

    def page(path: str):
        content, media = static[path]

        async def get() -> Response:
            return Response(content, media_type=media, headers=PAGE_HEADERS)

        return get

    for path in static:
        app.add_api_route(path, page(path), methods=["GET", "HEAD"], include_in_schema=False)

    @app.api_route("/favicon.ico", methods=["GET", "HEAD"], include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)  # no icon, and no 404 in the browser's console

    return app
