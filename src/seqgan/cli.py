"""The `seqgan` command line: a thin name -> function map over the library.

Every subcommand takes `--config PRESET_OR_YAML`, `--run-dir DIR`, `--seed N`, `--json` and any
number of dotted overrides `section.key=value`. Exit codes: 0 ok, 2 bad input, 1 bug.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from seqgan import __version__
from seqgan import config as C
from seqgan.errors import SeqGANError
from seqgan.rundir import RunDir, main_process, to_json

DEFAULT_PRESET = "chitchat-cpu"
ORACLE_PRESET = "oracle-quick"  # `seqgan oracle`'s default: chitchat-cpu has no oracle section (the full protocol)
# commands that a torchrun world would run once per rank, each rank doing all of it (serve binding one
# port twice, the oracle training N different models): refused under torchrun
SINGLE_PROCESS_COMMANDS = ("oracle", "chat", "respond", "serve", "compare", "export", "plot")
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
                  errno.EEXIST, errno.EPIPE}  # EEXIST: a file where the run keeps a folder; EPIPE: stdout's reader gone
PATH_ERRNOS = {errno.ENAMETOOLONG, errno.ELOOP}  # a path argument no file system can hold or resolve


class Ctx:
    """What a subcommand gets: the resolved config, the run directory and the parsed args."""

    def __init__(self, cfg: C.Config, run: RunDir, args: argparse.Namespace):
        self.cfg, self.run, self.args = cfg, run, args

    def say(self, *parts: Any) -> None:
        """Human text: stderr (stdout is kept for --json and replies); rank 0 only under torchrun."""
        if main_process():
            print(*parts, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- subcommands


def _stages():
    from seqgan import stages  # imports torch: only when a command needs it

    return stages


def cmd_prepare(ctx: Ctx) -> dict:
    from seqgan.data.prepare import prepare

    if not main_process():  # under torchrun, rank 0 alone prepares the run's files
        return {}
    with ctx.run.lock("prepare"):
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
    from seqgan.training.signals import StopFlag

    with ctx.run.lock("oracle"), StopFlag() as stop:
        return run_oracle(ctx.cfg, ctx.run, stop)


def cmd_plot(ctx: Ctx) -> dict:
    from seqgan.plot import plot_run

    out = plot_run(ctx.run)
    ctx.say("\n".join(out["plots"]))
    return out


def cmd_status(ctx: Ctx) -> dict:
    from seqgan.status import format_status, run_status

    out = run_status(ctx.run)
    if not ctx.args.json:
        sys.stdout.write(format_status(out))
    return out


def cmd_export(ctx: Ctx) -> dict:
    from seqgan.export import export_generator

    out = export_generator(ctx.cfg, ctx.run, ctx.args.checkpoint, ctx.args.out)
    ctx.say(f"exported the {out['generator']} generator to {out['path']}")
    return out


def cmd_run(ctx: Ctx) -> dict:
    return _stages().run_all(ctx.cfg, ctx.run)


SERVE_EXTRA = ("fastapi", "uvicorn", "starlette", "pydantic", "pydantic_core")


def cmd_serve(ctx: Ctx) -> dict:
    try:
        from seqgan.serve.server import ServeConfig, serve
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] in SERVE_EXTRA:
            raise SeqGANError("the server needs FastAPI and uvicorn, which are not installed: "
                              "pip install 'seqgan[serve]'") from None
        raise
    a = ctx.args
    scfg = ServeConfig(host=a.host, port=a.port, max_batch_size=a.max_batch_size, max_wait_ms=a.max_wait_ms,
                       max_context_turns=a.max_context_turns, max_context_chars=a.max_context_chars)
    return serve(ctx.cfg, ctx.run, scfg, say=ctx.say)


def cmd_compare(ctx: Ctx) -> dict:
    from seqgan.compare import compare

    out = compare(ctx.cfg, ctx.run, split=ctx.args.split or "test", n=ctx.args.n, out=ctx.args.out)
    markdown = out.pop("markdown")
    if ctx.args.out is not None:
        ctx.say(f"compare: {len(out['examples'])} contexts -> {ctx.args.out}")
    elif not ctx.args.json:
        sys.stdout.write(markdown)
    return out


COMMANDS: dict[str, Callable[[Ctx], dict]] = {
    "prepare": cmd_prepare,
    "pretrain": cmd_pretrain,
    "generate": cmd_generate,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "chat": cmd_chat,
    "respond": cmd_respond,
    "serve": cmd_serve,
    "compare": cmd_compare,
    "run": cmd_run,
    "export": cmd_export,
    "oracle": cmd_oracle,
    "plot": cmd_plot,
    "status": cmd_status,
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
    "run": "every stage in order, each skipped when complete (evaluate always re-runs)",
    "export": "a generator's weights as safetensors + JSON config + tokenizer",
    "oracle": "the SeqGAN paper's synthetic-data experiment (NLL-oracle)",
    "plot": "PNG curves of a run's metrics",
    "status": "what each stage of a run has saved, whether a command is at work on it, what comes next",
}

EXAMPLES = """examples:
  seqgan run                                         # the whole pipeline on chitchat (chitchat-cpu)
  seqgan run --config tiny --run-dir runs/try        # the same in seconds, at a test-sized preset
  seqgan run --run-dir runs/b adversarial.steps=200  # any config key as section.key=value
  seqgan chat --run-dir runs/chitchat-cpu            # talk to a trained generator
  seqgan status --run-dir runs/chitchat-cpu          # how far a run is, and what comes next
  seqgan oracle                                      # the synthetic benchmark (oracle-quick)

'seqgan COMMAND --help' gives a command's options; a stopped run resumes with the same command."""

# --------------------------------------------------------------------------- parsing


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help=f"preset name or YAML path (default {DEFAULT_PRESET}, {ORACLE_PRESET} for "
                        "oracle, or the run directory's config.yaml when it exists)")
    common.add_argument("--run-dir", help="run directory (default runs/<preset>)")
    common.add_argument("--seed", type=int, help="random seed (runtime.seed)")
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    reader = argparse.ArgumentParser(add_help=False)  # status reads a run as it is saved: no settings
    reader.add_argument("--run-dir", help="run directory (default runs/chitchat-cpu)")
    reader.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    p = _Parser(prog="seqgan", description="SeqGAN-family text GANs for dialogue response generation.",
                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"seqgan {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        sp = sub.add_parser(name, parents=[reader if name == "status" else common], help=HELP[name],
                            description=HELP[name])
        if name == "status":
            sp.set_defaults(config=None, seed=None, overrides=[])
            continue
        if name == "prepare":
            sp.add_argument("--force", action="store_true", help="prepare again even if up to date")
        if name == "pretrain":
            sp.add_argument("model", metavar="STAGE", choices=["generator", "discriminator"],
                            help="generator (MLE) or discriminator")
        if name in ("generate", "compare"):
            sp.add_argument("--split", default=None, help="train | valid | test (default "
                            f"{'train' if name == 'generate' else 'test'})")
        if name == "export":
            sp.add_argument("--out", default=None, help="output folder (default RUN_DIR/export/<generator>)")
        if name in ("chat", "respond", "export"):
            sp.add_argument("--checkpoint", default=None, help="pretrained | adversarial | PATH")
        if name == "serve":
            sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
            sp.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
            sp.add_argument("--max-batch-size", type=int, default=16,
                            help="requests answered by one model call at most (default 16; 1 = no batching)")
            sp.add_argument("--max-wait-ms", type=float, default=5.0,
                            help="how long a request may wait for others to share its batch (default 5)")
            sp.add_argument("--max-context-turns", type=int, default=32, help="turns per request (default 32)")
            sp.add_argument("--max-context-chars", type=int, default=4000,
                            help="characters per request, all turns together (default 4000)")
        if name == "compare":
            sp.add_argument("--n", type=int, default=50, help="contexts to compare (default 50)")
            sp.add_argument("--out", default=None, metavar="FILE.md|FILE.html",
                            help="write markdown or HTML by the suffix (default: markdown on stdout)")
        if name == "respond":
            sp.add_argument("text", help="the context (earlier turns separated by ' | ')")
        if name == "evaluate":
            sp.add_argument("--compare", nargs="+", metavar="DIR", help="several run directories, side by side "
                            "from their eval.json (a run without one is evaluated first)")
        # last, so that a command's own positionals (pretrain MODEL, respond TEXT) come first
        sp.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    return p


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (no usage dump) on bad arguments."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = " ".join(self.prog.split()[1:2])
        # argparse lists the optional overrides among the required positionals that precede them
        message = message.replace(", section.key=value", "")
        print(f"seqgan: {message} (see 'seqgan {command + ' ' if command else ''}--help')", file=sys.stderr)
        sys.exit(2)


OVERRIDE = re.compile(r"^[A-Za-z_]\w*(\.\w+)+=")  # section.key=value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Overrides may stand anywhere after the command, options between them included
    (`seqgan pretrain generator --run-dir D pretrain.epochs=3`), which argparse alone refuses."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    unknown = [a for a in extra if a.startswith("-") or "=" not in a]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    for option in ("config", "run_dir", "split", "out", "checkpoint"):  # '' would read as the option left out
        if getattr(args, option, None) == "":
            parser.error(f"--{option.replace('_', '-')} is empty")
    if "" in (getattr(args, "compare", None) or ()):  # '' would read as the current directory
        parser.error("--compare names an empty directory")
    args.overrides = list(args.overrides) + extra
    if args.command == "status" and args.overrides:
        parser.error("status reads a run as it is saved: it takes --run-dir and --json only")
    if getattr(args, "compare", None):
        settings = [a for a in args.compare if OVERRIDE.match(a)] + args.overrides
        settings += [] if args.seed is None else [f"--seed {args.seed}"]
        if settings:  # --compare's list would take them for run directories
            parser.error(f"evaluate --compare reads each run's eval.json; settings such as {settings[0]} do not "
                         "apply (evaluate that run with them first: seqgan evaluate --run-dir DIR SETTING)")
    return args


def _default_preset(args: argparse.Namespace) -> str:
    return ORACLE_PRESET if args.command == "oracle" else DEFAULT_PRESET


def make_context(args: argparse.Namespace) -> Ctx:
    """Resolve the config: preset/YAML (+ overrides), or the run's own config.yaml."""
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"runtime.seed={args.seed}")
    if args.run_dir is None:
        name = C.resolve_preset(args.config)[0] if args.config else _default_preset(args)
        run = RunDir(Path("runs") / Path(name).name)
    else:
        run = RunDir(args.run_dir)
    if getattr(args, "compare", None) or args.command == "status":  # they read each run's own config
        return Ctx(C.load_config(args.config or _default_preset(args)), run, args)
    if run.root.exists() and not run.root.is_dir():
        raise SeqGANError(f"--run-dir {run.root} is a file, not a run directory")
    stored = run.read_config()
    if args.config is None and stored is not None:
        cfg = C.from_dict(C.apply_overrides(stored, overrides))
    else:
        cfg = C.load_config(args.config or _default_preset(args), overrides)
    if args.command in SINGLE_PROCESS_COMMANDS and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SeqGANError(f"{args.command} runs in one process: start it without torchrun (torchrun runs "
                          "prepare, pretrain, generate, train, evaluate and run)")
    _store_paths_absolute(cfg, stored)
    oracle = args.command == "oracle"
    run.check_config(cfg, C.ORACLE_FROZEN_SECTIONS if oracle else C.FROZEN_SECTIONS, preset=args.config)
    if args.command in ("prepare", "run", "oracle"):  # the commands that start a run: before the lock file
        run.check_new_run_allowed(oracle)
    return Ctx(cfg, run, args)


def _store_paths_absolute(cfg: C.Config, stored: dict | None) -> None:
    """A relative data.path or oracle.params names a file from the current directory; stored so,
    a later command of the run from elsewhere (a resume) would not find it. A new value becomes
    absolute; one equal to the stored value stays as it is (a run stored with a relative path
    keeps it, and with it its prepared data's key)."""
    for section, key in (("data", "path"), ("oracle", "params")):
        part = getattr(cfg, section)
        value = getattr(part, key)
        if not value or value == ((stored or {}).get(section) or {}).get(key):
            continue
        try:
            path = Path(value).expanduser()
        except RuntimeError:  # an unknown ~user: reading the file says so in one line
            continue
        if not path.is_absolute():
            setattr(cfg, section, replace(part, **{key: str(path.absolute())}))


def main(argv: list[str] | None = None) -> int:
    _open_closed_std_streams()
    try:
        args = parse_args(argv)
    except SystemExit as e:  # bad arguments (one line already printed), --help, --version
        return e.code if isinstance(e.code, int) else 2
    try:
        return _run(args)
    finally:
        joined = sys.modules.get("seqgan.distributed")  # imported (with torch) only by commands that need it
        if joined is not None:
            joined.shutdown()


def _run(args: argparse.Namespace) -> int:
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
        if isinstance(e, OSError) and e.errno in PATH_ERRNOS and e.filename:
            print(f"seqgan {args.command}: error: {e.filename}: {e.strerror}", file=sys.stderr)
            return 2
        if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:  # disk full, read-only, no permission
            where = f": {e.filename}" if e.filename else ""
            if not e.filename:  # stdout (compare's markdown): nothing more goes to it
                _drop_stdout()
            print(f"seqgan {args.command}: error: cannot write{where}: {e.strerror}; files already in the run "
                  "directory are intact", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt as e:  # Ctrl-C outside a stage's handler (130), or a second signal in it
        print(f"seqgan {args.command}: interrupted", file=sys.stderr)
        return getattr(e, "exit_code", 130)
    try:
        if args.json and main_process():
            sys.stdout.write(to_json(result) + "\n")
        sys.stdout.flush()
    except OSError as e:  # stdout full, or its reader gone: the command itself is done
        _drop_stdout()
        print(f"seqgan {args.command}: error: cannot write the output: {e.strerror}", file=sys.stderr)
        return 2
    return 0


def _open_closed_std_streams() -> None:
    """A process started with stdin or stdout closed (`<&-`, `>&-`) has None for them: read end of
    file from stdin (chat ends at once) and write nothing to stdout, rather than fail on None."""
    if sys.stdin is None:
        sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115


def _drop_stdout() -> None:
    """stdout failed (full, or its reader gone): point it at /dev/null, so that Python's flush at
    exit does not print a traceback of its own."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
