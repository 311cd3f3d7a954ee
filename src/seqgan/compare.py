"""`seqgan compare`: the same contexts answered by both generators, beside the reference.

Contexts are a seeded sample of a prepared split; both generators sample with the run's
`sample` options (overridable: `sample.temperature=0.7`), each from its own seeded generator,
so the same command prints the same table. Output: markdown, or a standalone HTML page.
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

import numpy as np

from seqgan import artifacts
from seqgan.chat import Responder
from seqgan.config import Config
from seqgan.data.dataset import PairDataset
from seqgan.errors import SeqGANError
from seqgan.rundir import RunDir, atomic_write_text

SPLITS = ("train", "valid", "test")
GENERATORS = ("pretrained", "adversarial")
FORMATS = {".md": "markdown", ".html": "html", ".htm": "html"}


def output_format(out: str | None) -> str:
    """markdown | html from the suffix of --out (markdown when there is no file)."""
    if out is None:
        return "markdown"
    fmt = FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise SeqGANError(f"--out must end in .md or .html, got {out!r}")
    return fmt


def context_turns(text: str, cfg: Config) -> list[str]:
    """A prepared context (turns joined by data.context_separator) back into its turns, for
    display (the generators read the prepared ids themselves)."""
    sep = cfg.data.context_separator.strip() or cfg.data.context_separator
    return [t.strip() for t in text.split(sep) if t.strip()] if sep else [text]


def compare(cfg: Config, run: RunDir, split: str = "test", n: int = 50, out: str | None = None) -> dict:
    """Responses of both generators and the reference for n contexts of `split`; writes `out` if given."""
    if split not in SPLITS:
        raise SeqGANError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if n < 1:
        raise SeqGANError(f"--n must be at least 1, got {n}")
    fmt = output_format(out)
    data = PairDataset.load(run.split_path(split), artifacts.load_tokenizer(run).vocab_size)
    if len(data) == 0:
        raise SeqGANError(f"the {split} split of {run.root} has no pairs")
    rng = np.random.default_rng(cfg.runtime.seed)
    idx = np.sort(rng.permutation(len(data))[:n])
    examples = [{"index": int(i), "context": context_turns(data.context_text(int(i)), cfg),
                 "reference": data.response_text(int(i))} for i in idx]
    generators: dict[str, dict] = {}
    for which in GENERATORS:
        try:
            responder = Responder(cfg, run, which)
        except SeqGANError as e:
            if which == "pretrained":
                raise
            print(f"compare: {e}; showing the pretrained generator only", file=sys.stderr)
            generators[which] = {"available": False, "reason": str(e)}
            continue
        generators[which] = {"available": True}
        step = cfg.sample.batch_size
        for start in range(0, len(examples), step):
            chunk = examples[start : start + step]
            # the prepared ids: the context exactly as training saw it (a turn may hold the separator)
            replies = responder.respond_ids([data.context(ex["index"]) for ex in chunk], cfg.sample)
            for ex, r in zip(chunk, replies, strict=True):
                ex[which] = r["response"]
    result = {"run": str(run.root), "split": split, "seed": cfg.runtime.seed,
              "sampling": {k: v for k, v in vars(cfg.sample).items() if k != "batch_size"},
              "generators": generators, "examples": examples}
    result["markdown"] = to_markdown(result)
    if out is not None:
        text = result["markdown"] if fmt == "markdown" else to_html(result)
        try:
            atomic_write_text(Path(out), text)
        except OSError as e:
            raise SeqGANError(f"cannot write {out}: {e.strerror or e}") from None
        result["out"] = str(out)
    return result


# --------------------------------------------------------------------------- rendering


def _columns(result: dict) -> list[str]:
    return [w for w in GENERATORS if result["generators"].get(w, {}).get("available")]


def _summary(result: dict) -> str:
    s = result["sampling"]
    opts = f"strategy {s['strategy']}, temperature {s['temperature']:g}, top_k {s['top_k']}, top_p {s['top_p']:g}"
    if s["strategy"] == "beam":
        opts += f", num_beams {s['num_beams']}"
    missing = [f"no {w} generator" for w, g in result["generators"].items() if not g.get("available")]
    return (f"{len(result['examples'])} contexts of the {result['split']} split (seed {result['seed']}); "
            f"sampling: {opts}, max_len {s['max_len']}" + (f"; {', '.join(missing)}" if missing else "") + ".")


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|])")


def md_cell(text: str) -> str:
    """Text safe inside a markdown table cell (no HTML, no table breaks)."""
    text = " ".join(text.split())
    if not text:
        return "*(empty)*"
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def to_markdown(result: dict) -> str:
    cols = _columns(result)
    lines = [f"# seqgan compare: {md_cell(result['run'])}", "", _summary(result), "",
             "| # | context | " + " | ".join(cols) + " | reference |",
             "| --- | --- | " + " | ".join("---" for _ in cols) + " | --- |"]
    for k, ex in enumerate(result["examples"], 1):
        context = "<br>".join(md_cell(t) for t in ex["context"]) or md_cell("")
        cells = [str(k), context] + [md_cell(ex.get(w, "")) for w in cols] + [md_cell(ex["reference"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1d1d1f; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #d9d9de; padding: .4rem .6rem; vertical-align: top; text-align: left; }
th { background: #f2f2f4; }
td.context div + div { margin-top: .3rem; }
td.empty { color: #6b6b70; font-style: italic; }
.muted { color: #6b6b70; }
"""


def _td(text: str, cls: str) -> str:
    if not text.strip():
        return f'<td class="{cls} empty">(empty)</td>'
    return f'<td class="{cls}">{html.escape(text)}</td>'


def to_html(result: dict) -> str:
    cols = _columns(result)
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in ["#", "context", *cols, "reference"])
    rows = []
    for k, ex in enumerate(result["examples"], 1):
        context = "".join(f"<div>{e(t)}</div>" for t in ex["context"])
        cells = [f"<td>{k}</td>", f'<td class="context">{context}</td>']
        cells += [_td(ex.get(w, ""), w) for w in cols] + [_td(ex["reference"], "reference")]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    body = "\n".join(rows)
    return (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>seqgan compare: {e(result['run'])}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n"
            f"<h1>seqgan compare: {e(result['run'])}</h1>\n<p class=\"muted\">{e(_summary(result))}</p>\n"
            f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n</body>\n</html>\n")
