"""The pipeline's stages as functions of (config, run directory): what the CLI and `seqgan run` call.

Each stage checks its prerequisites (one clear line naming the command to run first), locks the
run directory, writes the resolved config, and resumes from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import sys
import time

import numpy as np
import torch

from seqgan import artifacts
from seqgan.config import Config, check_discriminator_reads_context
from seqgan.data.dataset import PairDataset
from seqgan.errors import SeqGANError
from seqgan.rundir import RunDir, atomic_write_bytes, atomic_write_text, main_process
from seqgan.runtime import setup
from seqgan.training.generate import contexts_of, generate_responses
from seqgan.training.signals import StopFlag

SPLITS = ("train", "valid", "test")


def say(*parts) -> None:
    if main_process():  # one voice in a distributed run
        print(*parts, file=sys.stderr, flush=True)


def _begin(cfg: Config, run: RunDir) -> tuple[torch.device, object]:
    """The device and the run's tokenizer. Each stage records its config in config.yaml once what
    it starts from has loaded: a command that stops on a missing prerequisite changes nothing."""
    device = setup(cfg.runtime)
    if cfg.runtime.tensorboard:
        run.enable_tensorboard()
    tokenizer = artifacts.load_tokenizer(run)
    return device, tokenizer


@contextlib.contextmanager
def _recorded(cfg: Config, run: RunDir):
    """config.yaml records the config the run's checkpoints were trained under: a stage that
    stops before it wrote any (a refused resume, bad data, a signal before the first save) puts
    the previous config back."""
    before = run.config_path.read_bytes() if main_process() and run.config_path.exists() else None
    saved = _checkpoint_files(run)
    run.write_config(cfg)
    try:
        yield
    except BaseException:
        if before is not None and _checkpoint_files(run) == saved:
            atomic_write_bytes(run.config_path, before)
        raise


def _checkpoint_files(run: RunDir) -> dict[str, tuple[int, int]]:
    folder = run.root / "checkpoints"
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.glob("*/*.pt")} if folder.is_dir() else {}


def pretrain_generator(cfg: Config, run: RunDir) -> dict:
    from seqgan.training.mle import pretrain_generator as fit

    with run.lock("pretrain generator"):
        device, tokenizer = _begin(cfg, run)
        t0 = time.monotonic()
        with _recorded(cfg, run), StopFlag() as stop:
            out = fit(cfg, run, device, tokenizer, stop=stop)
        out["seconds"] = round(time.monotonic() - t0, 1)
    say(f"generator: best validation perplexity {out['best_valid_ppl']:.2f} after {out['step']} steps "
        f"({out['parameters']:,} parameters) -> {out['checkpoint']}")
    return out


def generate(cfg: Config, run: RunDir, split: str = "train", max_pairs: int | None = None) -> dict:
    """Sample one response per context of `split` with the best pretrained (or adversarial) generator."""
    if split not in SPLITS:
        raise SeqGANError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    with run.lock("generate"):
        device, tokenizer = _begin(cfg, run)
        gen, which = artifacts.load_generator(cfg, run, tokenizer, device, "pretrained")
        data = PairDataset.load(run.split_path(split), tokenizer.vocab_size)
        run.write_config(cfg)
        n = len(data) if max_pairs is None else min(len(data), max_pairs)
        g = torch.Generator().manual_seed(cfg.runtime.seed + 11)
        t0 = time.monotonic()
        fakes = generate_responses(gen, contexts_of(data, np.arange(n)), cfg.sample, device, g,
                                   progress=cfg.runtime.progress, desc=f"generate {split}")
        seconds = time.monotonic() - t0
        lines = []
        for i, f in enumerate(fakes):
            ctx, ref = data.context_text(i), data.response_text(i)
            lines.append(f"{_tsv(ctx)}\t{_tsv(tokenizer.decode(f.tolist()))}\t{_tsv(ref)}")
        if main_process():  # every rank has every sample; rank 0 alone writes
            run.samples_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run.samples_dir / f"{split}.txt", "\n".join(lines) + "\n")
            flat = np.concatenate(fakes) if fakes else np.zeros(0, np.int32)
            offsets = np.concatenate([[0], np.cumsum([len(f) for f in fakes])]).astype(np.int64)
            import io

            buf = io.BytesIO()
            np.savez(buf, ids=flat.astype(np.int32), offsets=offsets, generator=which)
            atomic_write_bytes(run.samples_dir / f"{split}.npz", buf.getvalue())
    out = {"split": split, "samples": n, "seconds": round(seconds, 1), "samples_per_s": round(n / max(seconds, 1e-9), 1),
           "path": str(run.samples_dir / f"{split}.txt")}
    run.log("generate", **out)
    say(f"generated {n:,} responses for {split} in {seconds:.1f} s ({out['samples_per_s']:,.0f}/s) -> {out['path']}")
    return out


def _tsv(s: str) -> str:
    return s.replace("\t", " ").replace("\n", " ")


def pretrain_discriminator(cfg: Config, run: RunDir) -> dict:
    from seqgan.training.discriminator import pretrain_discriminator as fit

    with run.lock("pretrain discriminator"):
        device, tokenizer = _begin(cfg, run)
        gen, _ = artifacts.load_generator(cfg, run, tokenizer, device, "pretrained")
        t0 = time.monotonic()
        with _recorded(cfg, run), StopFlag() as stop:
            out = fit(cfg, run, device, tokenizer, gen, stop=stop)
        out["seconds"] = round(time.monotonic() - t0, 1)
    v = out.get("valid") or {}
    if v:
        say(f"discriminator: validation accuracy {v['accuracy']:.3f}, AUC {v['auc']:.3f}")
    return out


def train(cfg: Config, run: RunDir) -> dict:
    from seqgan.training.adversarial import train_adversarial
    from seqgan.training.checkpoint import restoring
    from seqgan.training.optim import load_optimizer_state, make_adamw

    with run.lock("train"):
        device, tokenizer = _begin(cfg, run)
        gen, _ = artifacts.load_generator(cfg, run, tokenizer, device, "pretrained")
        gen.train()
        disc, dckpt = artifacts.load_discriminator(cfg, run, tokenizer, device, "last")
        d_opt = make_adamw(disc, cfg.discriminator.lr, cfg.discriminator.weight_decay)
        with restoring(run.checkpoint("discriminator", "last")):
            load_optimizer_state(d_opt, dckpt["optimizer"])
            d_state = dckpt.get("state", {})
            if not d_state.get("complete", True) and not run.checkpoint("adversarial", "last").exists():
                say(f"      note: discriminator pretraining has not finished (round {d_state.get('round', 0)} of "
                    f"{cfg.discriminator.rounds} done); adversarial training starts from its last checkpoint "
                    f"(`seqgan pretrain discriminator --run-dir {run.root}` finishes it first)")
        t0 = time.monotonic()
        with _recorded(cfg, run), StopFlag() as stop:
            out = train_adversarial(cfg, run, device, tokenizer, gen, disc, d_opt, stop=stop)
        out["seconds"] = round(time.monotonic() - t0, 1)
    return out


def evaluate(cfg: Config, run: RunDir) -> dict:
    from seqgan.evaluate import evaluate_run

    with run.lock("evaluate"):
        device, tokenizer = _begin(cfg, run)
        result = evaluate_run(cfg, run, device, tokenizer)
        run.write_config(cfg)
        return result


def _warn_if_older(run: RunDir, stage: str, *inputs: tuple[str, str]) -> None:
    """Say so when a stage's checkpoint predates the checkpoint it starts from, (stage, best or
    last) each (e.g. the generator went on after a raised budget): the stage resumes or is skipped
    as it is."""
    last = run.checkpoint(stage, "last")
    if not last.exists():
        return
    mtime = last.stat().st_mtime
    newer = [s for s, which in inputs
             if (path := run.checkpoint(s, which)).exists() and path.stat().st_mtime > mtime]
    if newer:
        say(f"      note: checkpoints/{stage} predates the current {' and '.join(newer)} checkpoint; it is kept "
            f"as it is (remove {run.root / 'checkpoints' / stage} to train this stage again from them)")


def run_all(cfg: Config, run: RunDir) -> dict:
    """Every stage in order; each finished stage is skipped, an interrupted one resumes."""
    from seqgan import distributed
    from seqgan.data.prepare import prepare

    results: dict = {}
    t0 = time.monotonic()
    if not run.checkpoint("discriminator", "last").exists():  # before hours of generator pretraining
        check_discriminator_reads_context(cfg)
    say(f"[1/6] prepare -> {run.root}")
    world, _ = distributed.init(cfg.runtime.device)  # under torchrun, rank 0 alone prepares; the others wait
    if world.main:
        with run.lock("prepare"):
            results["prepare"] = prepare(cfg, run)
    world.barrier()
    # rank 0 alone writes a stage's files: every rank waits for them before the next stage reads them
    say("[2/6] pretrain generator (MLE)")
    results["pretrain_generator"] = pretrain_generator(cfg, run)
    world.barrier()
    samples = run.samples_dir / "valid.txt"
    say("[3/6] generate (validation contexts)")
    if samples.exists() and samples.stat().st_mtime >= run.checkpoint("generator", "best").stat().st_mtime:
        say("      samples up to date")
    else:
        results["generate"] = generate(cfg, run, "valid")
    world.barrier()
    say("[4/6] pretrain discriminator")
    _warn_if_older(run, "discriminator", ("generator", "best"))
    results["pretrain_discriminator"] = pretrain_discriminator(cfg, run)
    world.barrier()
    say(f"[5/6] adversarial training (objective {cfg.adversarial.objective})")
    _warn_if_older(run, "adversarial", ("generator", "best"), ("discriminator", "last"))  # what train loads
    results["train"] = train(cfg, run)
    world.barrier()
    say("[6/6] evaluate")
    results["evaluate"] = evaluate(cfg, run)
    results["seconds"] = round(time.monotonic() - t0, 1)
    say(f"done in {results['seconds'] / 60:.1f} min; run directory {run.root}")
    return results


def compare_runs(runs: list[RunDir]) -> dict:
    """Side-by-side table of several runs' eval.json (each run is evaluated first if it has none)."""
    from seqgan.config import from_dict
    from seqgan.evaluate import DIVERSITY_UNIT, format_table, read_eval

    results = {}
    for r in runs:
        stored = r.read_config()
        if stored is None:
            raise SeqGANError(f"{r.root} is not a run directory (no config.yaml)")
        if not r.eval_path.exists():
            evaluate(from_dict(stored), r)
        results[str(r.root)] = read_eval(r)
        if results[str(r.root)].get("diversity_unit") != DIVERSITY_UNIT:
            say(f"note: {r.eval_path} counts distinct-n, Self-BLEU-4, mean length and repetition in SentencePiece "
                f"pieces (written before they counted {DIVERSITY_UNIT}); `seqgan evaluate --run-dir {r.root}` "
                "writes it again")
    print(format_table(results), file=sys.stderr)
    return {"runs": results}
