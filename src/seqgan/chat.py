"""Talk to a trained generator: `seqgan respond` (one reply) and `seqgan chat` (a terminal REPL)."""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import numpy as np
import torch

from seqgan import artifacts
from seqgan.config import Config, SampleConfig
from seqgan.data.corpora import APOSTROPHES
from seqgan.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from seqgan.errors import SeqGANError
from seqgan.models.sampling import sample
from seqgan.rundir import RunDir
from seqgan.runtime import setup

MAX_INPUT_CHARS = 4000
MAX_TEMPERATURE = 10.0
MAX_TOP_K = 1_000_000
MAX_BEAMS = 16


def check_sample_options(opts: SampleConfig, longest: int) -> None:
    """The limits the HTTP API enforces, for options set in `seqgan chat`; a SeqGANError names
    the first one broken. `longest`: the generator's longest response (its positions)."""
    checks = [
        ("strategy", opts.strategy in ("greedy", "sample", "beam"), "greedy, sample or beam"),
        ("temperature", 0.0 <= opts.temperature <= MAX_TEMPERATURE, f"a number from 0 to {MAX_TEMPERATURE:g}"),
        ("top_k", 0 <= opts.top_k <= MAX_TOP_K, f"0 (off) to {MAX_TOP_K}"),
        ("top_p", 0.0 < opts.top_p <= 1.0, "more than 0 and at most 1"),
        ("num_beams", 1 <= opts.num_beams <= MAX_BEAMS, f"1 to {MAX_BEAMS}"),
        ("max_len", 1 <= opts.max_len <= longest, f"1 to {longest} (the generator's longest response)"),
    ]
    for key, ok, allowed in checks:
        if not ok:  # NaN fails every comparison, so it lands here too
            raise SeqGANError(f"{key} must be {allowed}, got {getattr(opts, key)!r}")


def encode_context(tokenizer, turns: list[str], cfg: Config) -> np.ndarray:
    """The last data.context_turns turns joined as in training, cut to the most recent max_len tokens.
    Training cuts a dialogue at an empty utterance, so the context starts after the last empty turn."""
    # bytes that are not UTF-8 (a command-line argument keeps them as surrogates) become U+FFFD
    turns = [" ".join(t.encode("utf-8", "surrogateescape").decode("utf-8", "replace").split()) for t in turns]
    turns = turns[max((i + 1 for i, t in enumerate(turns) if not t), default=0):]
    if not turns:
        raise SeqGANError("the context is empty: say something")
    if any(len(t) > MAX_INPUT_CHARS for t in turns):
        raise SeqGANError(f"a turn is longer than {MAX_INPUT_CHARS} characters")
    if cfg.data.corpus == "dailydialog":  # its training text has no typographic apostrophe (a phone types one)
        turns = [t.translate(APOSTROPHES) for t in turns]
    if cfg.data.lowercase:  # each turn, then the join, as training does (the separator keeps its case)
        turns = [t.lower() for t in turns]
    text = cfg.data.context_separator.join(turns[-cfg.data.context_turns:])
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
        """One reply per context (its turns, oldest first)."""
        return self.respond_ids([encode_context(self.tokenizer, c, self.cfg) for c in contexts], opts)

    def respond_ids(self, ids: list[np.ndarray], opts: SampleConfig) -> list[dict]:
        """One reply per encoded context (e.g. a prepared split's)."""
        from seqgan.training.generate import pad_batch, strip_tokens

        t0 = time.monotonic()
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
    """'hi | how are you?' -> ['hi', 'how are you?'] (earlier turns separated by ' | '); an empty
    turn stays, and the context is cut there as chat and serve cut it."""
    return [t.strip() for t in text.split(" | ")]


def respond_once(cfg: Config, run: RunDir, text: str, which: str | None) -> dict:
    r = Responder(cfg, run, which)
    return r.respond(split_turns(text), cfg.sample)


HELP = """commands: /reset (new conversation), /quit, /set KEY VALUE (temperature, top_k, top_p,
strategy greedy|sample|beam, num_beams, max_len), /show (current options)"""


def chat_loop(cfg: Config, run: RunDir, which: str | None, stdin=sys.stdin, stdout=sys.stdout) -> dict:
    r = Responder(cfg, run, which)
    if hasattr(stdin, "reconfigure"):  # bytes that are not UTF-8 read as U+FFFD, not end the session
        stdin.reconfigure(errors="replace")
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
                new = replace(opts, **{key: field(value)})
            except (IndexError, AttributeError, ValueError, TypeError):
                print(f"usage: /set KEY VALUE; {HELP}", file=stdout, flush=True)
                continue
            try:
                check_sample_options(new, cfg.model.generator.max_len)
            except SeqGANError as e:
                print(f"(not set: {e})", file=stdout, flush=True)
                continue
            opts = new
            print(f"({key} = {getattr(opts, key)})", file=stdout, flush=True)
            continue
        if line.startswith("/"):
            print(HELP, file=stdout, flush=True)
            continue
        if len(line) > MAX_INPUT_CHARS:
            print(f"(error: a turn is longer than {MAX_INPUT_CHARS} characters)", file=stdout, flush=True)
            continue
        history.append(line)
        try:
            reply = r.respond(history, opts)["response"]
        except SeqGANError as e:
            print(f"(error: {e})", file=stdout, flush=True)
            history.pop()
            continue
        history.append(reply)  # an empty one starts the context again from the next turn, as in training
        turns += 1
        print(f"bot> {reply or '(an empty reply; the next turn starts a new context)'}", file=stdout, flush=True)
    return {"turns": turns}
