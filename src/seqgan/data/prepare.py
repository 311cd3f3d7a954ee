"""`seqgan prepare`: corpus -> pairs -> split by dialogue -> SentencePiece -> encoded splits.

Everything is built in a temporary folder inside the run directory and moved into place at the
end, so bad input or a crash never leaves a half-prepared run. A re-run with the same data and
tokenizer settings and the same input files reuses what is there.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

from seqgan.config import Config, check_discriminator_reads_context, to_dict
from seqgan.data.corpora import read_corpus
from seqgan.data.dataset import encode_pairs, save_pairs
from seqgan.data.pairs import SPLITS, build_splits
from seqgan.data.tokenizer import model_hash, train_tokenizer
from seqgan.errors import DataError
from seqgan.rundir import RunDir, atomic_write_text


def data_seed(cfg: Config, manifest: dict | None = None) -> int:
    """The seed of the split, the max_dialogues sample and the tokenizer: data.seed; unset, the one
    the run's data was prepared with (a later --seed is a training seed: it must not ask for
    another split under trained checkpoints), else runtime.seed."""
    if cfg.data.seed is not None:
        return cfg.data.seed
    if manifest is not None and "data_seed" in manifest:
        return int(manifest["data_seed"])
    return cfg.runtime.seed


def _key(cfg: Config, fingerprint: str, seed: int) -> str:
    data = to_dict(cfg.data)
    data.pop("seed")  # in "seed" below: without data.seed the key is what it was before that existed
    payload = json.dumps({"data": data, "tokenizer": to_dict(cfg.tokenizer), "seed": seed,
                          "input": fingerprint}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def prepare(cfg: Config, run: RunDir, force: bool = False) -> dict:
    """Prepare the run's data; returns dialogues, pairs per split, vocab size and skip counts."""
    run.check_new_run_allowed()
    if run.read_config() is None:  # the model section is frozen from here on
        check_discriminator_reads_context(cfg)
    run.check_config(cfg)
    existed = run.root.exists() and any(p.name != ".lock" for p in run.root.iterdir())
    t0 = time.monotonic()
    try:
        corpus = read_corpus(cfg.data)
        old = run.read_manifest()
        seed = data_seed(cfg, old)
        key = _key(cfg, corpus.fingerprint, seed)
        # a run prepared before the corpus was keyed by its content: its key of size and mtime
        # still says "the same corpus" (once: the manifest then takes the content's key)
        same = old is not None and (old.get("key") == key or bool(corpus.legacy_fingerprint)
                                    and old.get("key") == _key(cfg, corpus.legacy_fingerprint, seed))
        if not force and same and not prepared_files_problem(run, old):
            print(f"prepare: {run.root} is up to date", file=sys.stderr)
            if old["key"] != key:
                atomic_write_text(run.data_dir / "manifest.json", json.dumps({**old, "key": key}, indent=2))
            run.write_config(cfg)
            return {**old["summary"], "reused": True}
        damaged = old is None and run.data_dir.exists()  # data whose manifest is missing or damaged
        if (old is not None or damaged) and not force and any((run.root / "checkpoints").glob("*/*.pt")):
            if not damaged and same:
                raise DataError(f"{run.root}: tokenizer/spm.model or a data split is missing or not the one "
                                "prepared; `seqgan prepare --force` makes them again (the same corpus and settings "
                                "give the same bytes, which the checkpoints are checked against)")
            why = "its data/manifest.json is missing or damaged" if damaged else \
                "the corpus, its settings or its seed changed"
            raise DataError(f"{run.root} has checkpoints trained on its prepared data and tokenizer; preparing "
                            f"again ({why}) would leave them unusable: use another --run-dir, or `seqgan prepare "
                            "--force` to replace the data anyway")
        pairs, skipped, used = build_splits(corpus, cfg.data, seed)
        tmp = run.root / ".prepare.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "data").mkdir(parents=True)
        train = pairs["train"]
        tokenizer = train_tokenizer(sorted(set(train.contexts) | set(train.responses)), tmp / "tokenizer",
                                    cfg.tokenizer.vocab_size, cfg.tokenizer.model_type,
                                    cfg.tokenizer.character_coverage, cfg.tokenizer.max_sentences, seed)
        counts = {}
        for s in SPLITS:
            p = pairs[s]
            ctx, resp = encode_pairs(tokenizer, p.contexts, p.responses, cfg.data.max_len)
            save_pairs(tmp / "data" / f"{s}.npz", ctx, resp, p.dialogue_ids, p.contexts, p.responses)
            counts[s] = len(p.contexts)
        summary = {"dialogues": used, "pairs": counts, "vocab_size": tokenizer.vocab_size, "skipped": skipped,
                   "run_dir": str(run.root)}
        atomic_write_text(tmp / "data" / "manifest.json",
                          json.dumps({"key": key, "tokenizer_hash": tokenizer.hash, "data_seed": seed, "summary": summary},
                                     indent=2))
        for name in ("tokenizer", "data"):
            shutil.rmtree(run.root / name, ignore_errors=True)
            (tmp / name).rename(run.root / name)
        shutil.rmtree(tmp, ignore_errors=True)
        run.write_config(cfg)
    except BaseException:
        shutil.rmtree(run.root / ".prepare.partial", ignore_errors=True)
        if not existed:
            shutil.rmtree(run.root, ignore_errors=True)
        raise
    seconds = time.monotonic() - t0
    run.log("prepare", seconds=round(seconds, 1), **summary)
    print(f"prepare: {used:,} dialogues -> {counts['train']:,} / {counts['valid']:,} / {counts['test']:,} "
          f"train / valid / test pairs, vocabulary {tokenizer.vocab_size:,}, skipped {skipped} "
          f"({seconds:.1f} s) -> {run.root}", file=sys.stderr)
    return {**summary, "reused": False}


def _tokenizer_hash(run: RunDir) -> str | None:
    """The hash of tokenizer/spm.model as `Tokenizer` computes it; None without the file."""
    try:
        return model_hash(run.spm_model.read_bytes())
    except OSError:
        return None


def prepared_files_problem(run: RunDir, manifest: dict) -> str:
    """What is missing, or not the one prepared, among the files `manifest` stands for ("" if none)."""
    missing = [str(p.relative_to(run.root)) for p in (run.spm_model, *(run.split_path(s) for s in SPLITS))
               if not p.is_file()]
    if missing:
        return f"{', '.join(missing)} missing"
    return "" if _tokenizer_hash(run) == manifest["tokenizer_hash"] else "tokenizer/spm.model is not the one prepared"


def prepared(run: RunDir) -> bool:
    return run.read_manifest() is not None and Path(run.spm_model).exists()
