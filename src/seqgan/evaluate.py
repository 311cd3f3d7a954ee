"""`seqgan evaluate`: the metrics table of a run's generators (pretrained and adversarial).

For each generator: test NLL and perplexity (teacher forcing), then one sampled response per
test context (eval.max_pairs of them, a fixed seeded subset) scored by corpus BLEU-1..4 against
the references, Texygen-style BLEU-2..4 (each response against every response of the split, as
the papers' unconditional BLEU), distinct-1/2, mean length, repetition rate, Self-BLEU-4 (all
counted in words as corpus BLEU splits them, as the papers count them: not SentencePiece
pieces), the run's final discriminator (accuracy and fooling rate), and a
classifier two-sample test: a fresh discriminator trained on half of (real, generated) and
tested on the other half; an accuracy near 0.5 means the generated responses are hard to tell
from real ones.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from seqgan import artifacts
from seqgan.config import Config
from seqgan.data.dataset import PairDataset
from seqgan.errors import SeqGANError
from seqgan.metrics.bleu import corpus_bleu, self_bleu, texygen_bleus, words
from seqgan.metrics.diversity import distinct_n, mean_length, repetition_rate
from seqgan.models import build_discriminator
from seqgan.rundir import RunDir, atomic_write_text, main_process, to_json
from seqgan.training import discriminator as dtrain
from seqgan.training.generate import contexts_of, generate_responses
from seqgan.training.mle import validation_nll
from seqgan.training.optim import make_adamw

DIVERSITY_UNIT = "words"  # what distinct-n, Self-BLEU, mean length and repetition count (pieces before 1085a3b)

ROWS = [
    ("test_nll", "test NLL (nats/token)", "{:.3f}"),
    ("test_ppl", "test perplexity", "{:.2f}"),
    ("bleu_1", "BLEU-1", "{:.2f}"),
    ("bleu_2", "BLEU-2", "{:.2f}"),
    ("bleu_3", "BLEU-3", "{:.2f}"),
    ("bleu_4", "BLEU-4", "{:.2f}"),
    ("texygen_bleu_2", "BLEU-2 vs all refs (Texygen)", "{:.4f}"),
    ("texygen_bleu_3", "BLEU-3 vs all refs (Texygen)", "{:.4f}"),
    ("texygen_bleu_4", "BLEU-4 vs all refs (Texygen)", "{:.4f}"),
    ("distinct_1", "distinct-1", "{:.4f}"),
    ("distinct_2", "distinct-2", "{:.4f}"),
    ("self_bleu_4", "Self-BLEU-4", "{:.4f}"),
    ("mean_length", "mean length (words)", "{:.1f}"),
    ("repetition_rate", "repetition rate", "{:.4f}"),
    ("d_accuracy", "D accuracy", "{:.3f}"),
    ("fooling_rate", "D fooling rate", "{:.3f}"),
    ("two_sample_accuracy", "two-sample test accuracy", "{:.3f}"),
    ("two_sample_margin", "  its 95% noise at 0.5 (+-)", "{:.3f}"),
]


def two_sample_test(cfg: Config, vocab_size: int, data: PairDataset, idx: np.ndarray, fakes: list[np.ndarray],
                    device: torch.device, epochs: int = 3) -> tuple[float, int]:
    """Held-out accuracy of a fresh discriminator trained to separate real from generated responses,
    and the number of held-out examples it was measured on (real and generated).

    The pairs are split in two by dialogue (as the data splits are): with context_turns=1 a real
    response is the context of the next pair, which a split by pair would put on both sides.
    """
    rng = np.random.default_rng(cfg.runtime.seed + 13)
    torch.manual_seed(cfg.runtime.seed + 13)
    dialogues = data.dialogue_ids()[idx]
    uniq = rng.permutation(np.unique(dialogues))
    fit_d = uniq[: len(uniq) // 2]
    in_fit = np.isin(dialogues, fit_d)
    fit_i, test_i = np.nonzero(in_fit)[0], np.nonzero(~in_fit)[0]
    if min(len(fit_i), len(test_i)) < 2:
        return math.nan, 0
    model = build_discriminator(replace(cfg.model.discriminator, vocab_size=vocab_size)).to(device)
    opt = make_adamw(model, cfg.discriminator.lr * 3, cfg.discriminator.weight_decay)
    cap = cfg.sample.max_len  # where the samples stop
    fit = dtrain.build_examples(data, idx[fit_i], [fakes[i] for i in fit_i], 0.0, rng, cap)
    test = dtrain.build_examples(data, idx[test_i], [fakes[i] for i in test_i], 0.0, rng, cap)
    dtrain.train_epochs(model, opt, fit, epochs, cfg.discriminator, device, rng)
    return dtrain.evaluate(model, test, device)["accuracy"], len(test.labels)


def evaluate_generator(cfg: Config, gen: nn.Module, tokenizer, data: PairDataset, idx: np.ndarray,
                       disc: nn.Module | None, device: torch.device,
                       references: list[list[str]] | None = None) -> tuple[dict, list[np.ndarray]]:
    """One generator's metrics and samples. `references`: the words of every response of `data`
    (Texygen BLEU's reference set), when the caller has them already."""
    nll = validation_nll(gen, data, cfg.pretrain.batch_tokens * 2, device)
    g = torch.Generator().manual_seed(cfg.runtime.seed + 21)
    fakes = generate_responses(gen, contexts_of(data, idx), cfg.sample, device, g,
                               progress=cfg.runtime.progress, desc="evaluate: sampling")
    hyps = [tokenizer.decode(f.tolist()) for f in fakes]
    refs = [data.response_text(int(i)) for i in idx]
    toks = [words(h) for h in hyps]  # every metric below counts words
    m = {"test_nll": nll, "test_ppl": math.exp(min(nll, 50))}
    m.update(corpus_bleu(hyps, refs))
    # Texygen's BLEU scores each response against the whole reference set: every test response
    if references is None:
        references = response_words(data)
    m.update(texygen_bleus(toks, references, (2, 3, 4)))
    m.update({"distinct_1": distinct_n(toks, 1), "distinct_2": distinct_n(toks, 2),
              "self_bleu_4": self_bleu(toks, 4), "mean_length": mean_length(toks),
              "repetition_rate": repetition_rate(toks)})
    if disc is not None:
        ex = dtrain.build_examples(data, idx, fakes, 0.0, np.random.default_rng(0), cfg.sample.max_len)
        d = dtrain.evaluate(disc, ex, device)
        m.update({"d_accuracy": d["accuracy"], "fooling_rate": d["fooling_rate"]})
    if cfg.eval.two_sample_test:
        m["two_sample_accuracy"], n = two_sample_test(cfg, tokenizer.vocab_size, data, idx, fakes, device)
        # the accuracy's sampling noise alone, where it matters (near chance): 1.96 binomial standard errors
        m["two_sample_margin"] = 1.96 * math.sqrt(0.25 / n) if n else math.nan
    return m, fakes


def response_words(data: PairDataset) -> list[list[str]]:
    """The words of every response of `data`, as BLEU sees them."""
    return [words(data.response_text(i)) for i in range(len(data))]


def evaluate_run(cfg: Config, run: RunDir, device: torch.device, tokenizer) -> dict:
    data = PairDataset.load(run.split_path(cfg.eval.split), tokenizer.vocab_size)
    rng = np.random.default_rng(cfg.runtime.seed + 7)
    n = len(data) if cfg.eval.max_pairs is None else min(len(data), cfg.eval.max_pairs)
    idx = np.sort(rng.permutation(len(data))[:n])
    disc = artifacts.adversarial_discriminator(cfg, run, tokenizer, device)
    if disc is None and run.checkpoint("discriminator", "best").exists():
        disc = artifacts.load_discriminator(cfg, run, tokenizer, device)[0].eval()
    result: dict = {"run": str(run.root), "split": cfg.eval.split, "pairs": int(n), "diversity_unit": DIVERSITY_UNIT,
                    "generators": {}, "examples": []}
    samples, references = {}, response_words(data)  # the reference set, read once for both generators
    for which in ("pretrained", "adversarial"):
        if which == "adversarial" and not run.checkpoint(artifacts.GENERATOR_STAGES[which], "best").exists():
            # a stage not run yet is left out; an unreadable checkpoint is an error (exit 2), as the pretrained one's
            print(f"evaluate: {run.root} has no adversarial generator yet (run 'seqgan train --run-dir {run.root}' "
                  "for it); its column is left out", file=sys.stderr)
            continue
        gen, _ = artifacts.load_generator(cfg, run, tokenizer, device, which)
        metrics, fakes = evaluate_generator(cfg, gen, tokenizer, data, idx, disc, device, references)
        result["generators"][which] = {k: round(float(v), 5) for k, v in metrics.items()}
        samples[which] = fakes
    for j in range(min(cfg.eval.num_examples, n)):
        i = int(idx[j])
        ex = {"context": data.context_text(i), "reference": data.response_text(i)}
        for which, fakes in samples.items():
            ex[which] = tokenizer.decode(fakes[j].tolist())
        result["examples"].append(ex)
    run.log("evaluate", **{f"{w}_{k}": v for w, m in result["generators"].items() for k, v in m.items()})
    if main_process():  # every rank has the whole result; rank 0 alone writes and prints
        atomic_write_text(run.eval_path, to_json(result, indent=2) + "\n")
        print(format_table({str(run.root): result}), file=sys.stderr)
        print(format_examples(result), file=sys.stderr)
    return result


def read_eval(run: RunDir) -> dict:
    """A run's eval.json, checked: a SeqGANError when it cannot be read or is not one evaluate wrote."""
    again = f"run seqgan evaluate --run-dir {run.root} to write it again"
    try:
        result = json.loads(run.eval_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SeqGANError(f"cannot read {run.eval_path} ({getattr(e, 'strerror', None) or e}); {again}") from e
    gens = result.get("generators") if isinstance(result, dict) else None
    if not isinstance(gens, dict) or not all(
            isinstance(m, dict) and all(v is None or isinstance(v, int | float) and not isinstance(v, bool)
                                        for v in m.values()) for m in gens.values()):
        raise SeqGANError(f"{run.eval_path} is not a metrics file written by seqgan evaluate; {again}")
    return result


def format_table(results: dict[str, dict]) -> str:
    """Metric rows x (run, generator) columns as a plain-text table."""
    cols = [(run, g) for run, r in results.items() for g in r["generators"]]
    multi = len(results) > 1
    head = ["metric"] + [f"{run}:{g}" if multi else g for run, g in cols]
    rows = [head]
    for key, label, fmt in ROWS:
        vals = [results[run]["generators"][g].get(key) for run, g in cols]
        if all(v is None for v in vals):
            continue
        rows.append([label] + [("-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v))
                               for v in vals])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def format_examples(result: dict) -> str:
    out = []
    for ex in result["examples"]:
        out.append(f"\ncontext:     {ex['context']}")
        for k in ("pretrained", "adversarial"):
            if k in ex:
                out.append(f"{k + ':':<13}{ex[k]}")
        out.append(f"reference:   {ex['reference']}")
    return "\n".join(out)
