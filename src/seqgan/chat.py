"""Talk to a trained generator: `seqgan respond` (one reply) and `seqgan chat` (a terminal REPL)."""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import numpy as np
import torch

from seqgan import artifacts
from seqgan.config import Config, SampleConfig
from seqgan.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from seqgan.errors import SeqGANError
from seqgan.models.sampling import sample
from seqgan.rundir import RunDir
from seqgan.runtime import setup

MAX_INPUT_CHARS = 4000


def encode_context(tokenizer, turns: list[str], cfg: Config) -> np.ndarray:
    """The last data.context_turns turns joined as in training, cut to the most recent max_len tokens."""
    turns = [" ".join(t.split()) for t in turns if t.strip()]
    if not turns:
        raise SeqGANError("the context is empty: say something")
    if any(len(t) > MAX_INPUT_CHARS for t in turns):
        raise SeqGANError(f"a turn is longer than {MAX_INPUT_CHARS} characters")
    text = cfg.data.context_separator.join(turns[-cfg.data.context_turns:])
    if cfg.data.lowercase:
        text = text.lower()
    ids = tokenizer.encode(text)[-cfg.data.max_len:]
    if not ids:  # e.g. only control characters, which normalization removes
        raise SeqGANError("the context is empty once normalized: say something with letters or digits")
    return np.asarray(ids, dtype=np.int64)


class Responder:
    """A loaded generator plus tokenizer that answers contexts (list of turns)."""

    def __init__(self, cfg: Config, run: RunDir, which: str | None = None):
        self.cfg = cfg
        self.device = setup(cfg.runtime)
        self.tokenizer = artifacts.load_tokenizer(run)
        self.model, self.which = artifacts.load_generator(cfg, run, self.tokenizer, self.device, which)
        self.generator = torch.Generator().manual_seed(cfg.runtime.seed)

    @torch.no_grad()
    def respond_batch(self, contexts: list[list[str]], opts: SampleConfig) -> list[dict]:
        from seqgan.training.generate import pad_batch, strip_tokens

        t0 = time.monotonic()
        ids = [encode_context(self.tokenizer, c, self.cfg) for c in contexts]
        src, src_mask = pad_batch(ids)
        tokens = sample(self.model, src.to(self.device), src_mask.to(self.device), max_len=opts.max_len,
                        strategy=opts.strategy, temperature=opts.temperature, top_k=opts.top_k, top_p=opts.top_p,
                        num_beams=opts.num_beams, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID,
                        generator=self.generator)
        ms = (time.monotonic() - t0) * 1000
        out = []
        for row in strip_tokens(tokens):
            content = [int(t) for t in row if t != EOS_ID]
            out.append({"response": self.tokenizer.decode(content), "tokens": len(content),
                        "latency_ms": round(ms, 1), "generator": self.which})
        return out

    def respond(self, turns: list[str], opts: SampleConfig) -> dict:
        return self.respond_batch([turns], opts)[0]


def split_turns(text: str) -> list[str]:
    """'hi | how are you?' -> ['hi', 'how are you?'] (earlier turns separated by ' | ')."""
    return [t.strip() for t in text.split(" | ") if t.strip()]


def respond_once(cfg: Config, run: RunDir, text: str, which: str | None) -> dict:
    r = Responder(cfg, run, which)
    return r.respond(split_turns(text), cfg.sample)


HELP = """commands: /reset (new conversation), /quit, /set KEY VALUE (temperature, top_k, top_p,
strategy greedy|sample|beam, num_beams, max_len), /show (current options)"""


def chat_loop(cfg: Config, run: RunDir, which: str | None, stdin=sys.stdin, stdout=sys.stdout) -> dict:
    r = Responder(cfg, run, which)
    opts = replace(cfg.sample)
    history: list[str] = []
    print(f"seqgan chat: {r.which} generator from {run.root}. {HELP}", file=stdout, flush=True)
    turns = 0
    while True:
        print("you> ", end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            history = []
            print("(new conversation)", file=stdout, flush=True)
            continue
        if line == "/show":
            print(opts, file=stdout, flush=True)
            continue
        if line.startswith("/set"):
            parts = line.split()
            try:
                key, value = parts[1], parts[2]
                field = type(getattr(opts, key))
                opts = replace(opts, **{key: field(value)})
            except (IndexError, AttributeError, ValueError, TypeError):
                print(f"usage: /set KEY VALUE; {HELP}", file=stdout, flush=True)
            continue
        if line.startswith("/"):
            print(HELP, file=stdout, flush=True)
            continue
        history.append(line[:MAX_INPUT_CHARS])
        try:
            reply = r.respond(history, opts)["response"]
        except SeqGANError as e:
            print(f"(error: {e})", file=stdout, flush=True)
            history.pop()
            continue
        history.append(reply)
        turns += 1
        print(f"bot> {reply}", file=stdout, flush=True)
    return {"turns": turns}
