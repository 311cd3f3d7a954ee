"""The `seqgan` command line: a thin name -> function map over the library.

Every subcommand takes `--config PRESET_OR_YAML`, `--run-dir DIR`, `--seed N`, `--json` and any
number of dotted overrides `section.key=value`. Exit codes: 0 ok, 2 bad input, 1 bug.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seqgan import __version__
from seqgan import config as C
from seqgan.errors import SeqGANError
from seqgan.rundir import RunDir

DEFAULT_PRESET = "chitchat-cpu"


class Ctx:
    """What a subcommand gets: the resolved config, the run directory and the parsed args."""

    def __init__(self, cfg: C.Config, run: RunDir, args: argparse.Namespace):
        self.cfg, self.run, self.args = cfg, run, args

    def say(self, *parts: Any) -> None:
        """Human text: stderr (stdout is kept for --json and replies)."""
        print(*parts, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- subcommands


def _stages():
    from seqgan import stages  # imports torch: only when a command needs it

    return stages


def cmd_prepare(ctx: Ctx) -> dict:
    from seqgan.data.prepare import prepare

    with ctx.run.lock():
        return prepare(ctx.cfg, ctx.run, force=ctx.args.force)


def cmd_pretrain(ctx: Ctx) -> dict:
    if ctx.args.model == "generator":
        return _stages().pretrain_generator(ctx.cfg, ctx.run)
    return _stages().pretrain_discriminator(ctx.cfg, ctx.run)


def cmd_generate(ctx: Ctx) -> dict:
    return _stages().generate(ctx.cfg, ctx.run, ctx.args.split or "train")


def cmd_train(ctx: Ctx) -> dict:
    return _stages().train(ctx.cfg, ctx.run)


def cmd_evaluate(ctx: Ctx) -> dict:
    if ctx.args.compare:
        return _stages().compare_runs([RunDir(d) for d in ctx.args.compare])
    return _stages().evaluate(ctx.cfg, ctx.run)


def cmd_respond(ctx: Ctx) -> dict:
    from seqgan.chat import respond_once

    out = respond_once(ctx.cfg, ctx.run, ctx.args.text, ctx.args.checkpoint)
    if not ctx.args.json:
        print(out["response"])
    return out


def cmd_chat(ctx: Ctx) -> dict:
    from seqgan.chat import chat_loop

    return chat_loop(ctx.cfg, ctx.run, ctx.args.checkpoint)


def cmd_oracle(ctx: Ctx) -> dict:
    from seqgan.oracle.experiment import run_oracle

    with ctx.run.lock():
        return run_oracle(ctx.cfg, ctx.run)


def cmd_plot(ctx: Ctx) -> dict:
    from seqgan.plot import plot_run

    out = plot_run(ctx.run)
    ctx.say("\n".join(out["plots"]))
    return out


def cmd_run(ctx: Ctx) -> dict:
    return _stages().run_all(ctx.cfg, ctx.run)


def _not_built(what: str, milestone: str) -> Callable[[Ctx], dict]:
    def run(ctx: Ctx) -> dict:
        raise SeqGANError(f"'seqgan {what}' is not built yet; it arrives with the milestone '{milestone}'")

    return run


COMMANDS: dict[str, Callable[[Ctx], dict]] = {
    "prepare": cmd_prepare,
    "pretrain": cmd_pretrain,
    "generate": cmd_generate,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "chat": cmd_chat,
    "respond": cmd_respond,
    "serve": _not_built("serve", "Chat server"),
    "compare": _not_built("compare", "Chat server"),
    "run": cmd_run,
    "oracle": cmd_oracle,
    "plot": cmd_plot,
}

HELP = {
    "prepare": "corpus -> dialogue pairs -> SentencePiece model -> encoded splits",
    "pretrain": "pretrain the generator (MLE) or the discriminator",
    "generate": "sample a response for every context of a split",
    "train": "adversarial training (objective: seqgan | penalty)",
    "evaluate": "metrics table + eval.json for a run, or several side by side",
    "chat": "talk to a trained generator in the terminal",
    "respond": "one reply to a context, on stdout",
    "serve": "HTTP API and web chat page",
    "compare": "responses of both generators and the reference, side by side",
    "run": "every stage in order, each skipped when already complete",
    "oracle": "the SeqGAN paper's synthetic-data experiment (NLL-oracle)",
    "plot": "PNG curves of a run's metrics",
}


# --------------------------------------------------------------------------- parsing


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help=f"preset name or YAML path (default {DEFAULT_PRESET}, "
                        "or the run directory's config.yaml when it exists)")
    common.add_argument("--run-dir", help="run directory (default runs/<preset>)")
    common.add_argument("--seed", type=int, help="random seed (runtime.seed)")
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    common.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")

    p = _Parser(prog="seqgan", description="SeqGAN-family text GANs for dialogue response generation.")
    p.add_argument("--version", action="version", version=f"seqgan {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        sp = sub.add_parser(name, parents=[common], help=HELP[name], description=HELP[name])
        if name == "prepare":
            sp.add_argument("--force", action="store_true", help="prepare again even if up to date")
        if name == "pretrain":
            sp.add_argument("model", choices=["generator", "discriminator"])
        if name in ("generate", "compare"):
            sp.add_argument("--split", default=None, help="train | valid | test")
        if name in ("chat", "respond", "compare", "serve"):
            sp.add_argument("--checkpoint", default=None, help="pretrained | adversarial | PATH")
        if name == "respond":
            sp.add_argument("text", help="the context (earlier turns separated by ' | ')")
        if name == "evaluate":
            sp.add_argument("--compare", nargs="+", metavar="DIR", help="several run directories")
    return p


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (no usage dump) on bad arguments."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"seqgan: {message} (see 'seqgan {self.prog.split()[-1]} --help')", file=sys.stderr)
        sys.exit(2)


def make_context(args: argparse.Namespace) -> Ctx:
    """Resolve the config: preset/YAML (+ overrides), or the run's own config.yaml."""
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"runtime.seed={args.seed}")
    if args.run_dir is None:
        name = C.resolve_preset(args.config)[0] if args.config else DEFAULT_PRESET
        run = RunDir(Path("runs") / Path(name).name)
    else:
        run = RunDir(args.run_dir)
    stored = run.read_config()
    if args.config is None and stored is not None:
        cfg = C.from_dict(C.apply_overrides(stored, overrides))
    else:
        cfg = C.load_config(args.config or DEFAULT_PRESET, overrides)
    if getattr(args, "compare", None):
        return Ctx(cfg, run, args)  # several runs: each is read with its own config
    run.check_config(cfg)
    return Ctx(cfg, run, args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        ctx = make_context(args)
        result = COMMANDS[args.command](ctx) or {}
    except SeqGANError as e:
        print(f"seqgan {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from seqgan.training.signals import Interrupted

        if isinstance(e, Interrupted):
            print(f"seqgan {args.command}: stopped: {e}", file=sys.stderr)
            return e.exit_code
        if isinstance(e, FloatingPointError):
            print(f"seqgan {args.command}: stopped: {e}", file=sys.stderr)
            return 1
        raise
    except KeyboardInterrupt:
        print(f"seqgan {args.command}: interrupted", file=sys.stderr)
        return 130
    if args.json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
