"""`seqgan plot`: PNG curves of a run's metrics.jsonl (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

from seqgan.errors import SeqGANError
from seqgan.rundir import RunDir

# (file name, title, [(stage, x key, y key, label)], reference lines, y-axis label)
PANELS = [
    ("pretrain_generator.png", "generator MLE",
     [("pretrain_generator", "step", "loss", "train loss"), ("pretrain_generator", "step", "valid_nll", "valid NLL")],
     [], "nats per token"),
    ("discriminator.png", "discriminator pretraining",
     [("pretrain_discriminator", "round", "valid_accuracy", "valid accuracy"),
      ("pretrain_discriminator", "round", "valid_auc", "valid AUC")], [], "accuracy / AUC"),
    ("adversarial.png", "adversarial training",
     [("adversarial", "step", "reward", "mean reward (seqgan: D of rollouts; penalty: log D)"),
      ("adversarial", "step", "d_accuracy", "D accuracy in its last d-step (training)"),
      ("adversarial", "step", "val_fooling_rate", "valid fooling rate")], [], "reward / rate"),
    ("adversarial_ppl.png", "adversarial: validation perplexity",
     [("adversarial", "step", "val_valid_ppl", "valid perplexity")], [], "perplexity"),
]
ORACLE_LINES = [(9.038, "paper MLE 9.038"), (8.736, "paper SeqGAN 8.736")]


def _series(records: list[dict], stage: str, x: str, y: str, phase: str | None = None) -> tuple[list, list]:
    """The (x, y) points of one curve in x order. A resumed stage logs again the steps after its
    last checkpoint: where x goes back, every point from there on is the abandoned attempt's and
    is dropped (not only those logged again), so the line never runs back on itself nor ends on
    a trajectory that was thrown away."""
    points: dict = {}
    last = None  # the x of the record before
    for r in records:
        if r.get("stage") != stage or y not in r or not _is_number(r.get(x)):  # a hand-edited line: skipped
            continue
        if phase is not None and r.get("phase") != phase:
            continue
        if last is not None and r[x] <= last:  # a resumed attempt: what the last one logged from here is void
            points = {k: v for k, v in points.items() if k < r[x]}
        last = r[x]
        if _is_number(r[y]):
            points[r[x]] = r[y]
    xs = sorted(points)
    return xs, [points[k] for k in xs]


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def oracle_timeline(records: list[dict], mle_epochs: int | None) -> tuple[list, int]:
    """NLL-oracle on one axis of generator epochs, as the paper's figure draws it: MLE epoch e at
    x = e, adversarial round r at x = mle_epochs + r. Returns the two series and the x where the
    adversarial rounds start (`mle_epochs`, or one past the last MLE point logged)."""
    mle = _series(records, "oracle", "index", "nll_oracle", "mle")
    adv = _series(records, "oracle", "index", "nll_oracle", "adversarial")
    start = mle_epochs if mle_epochs is not None else (mle[0][-1] + 1 if mle[0] else 0)
    return [(*mle, "MLE"), ([start + r for r in adv[0]], adv[1], "SeqGAN")], start


def plot_run(run: RunDir) -> dict:
    """Write one PNG per panel that has data; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = run.read_metrics()
    if not records:
        raise SeqGANError(f"{run.metrics_path} is missing or empty: nothing to plot")
    run.plots_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []

    def panel(name: str, title: str, series: list[tuple[list, list, str]], refs: list[tuple[float, str]],
              xlabel: str, ylabel: str, marks: tuple[tuple[float, str], ...] = ()) -> None:
        series = [s for s in series if s[0]]
        if not series:
            return
        fig, ax = plt.subplots(figsize=(7, 4))
        for xs, ys, label in series:
            ax.plot(xs, ys, marker="." if len(xs) < 60 else None, label=label)
        for yv, label in refs:
            ax.axhline(yv, linestyle="--", linewidth=1, color="gray")
            ax.text(ax.get_xlim()[0], yv, f" {label}", va="bottom", fontsize=8, color="gray")
        for xv, label in marks:
            ax.axvline(xv, linestyle=":", linewidth=1, color="gray")
            ax.text(xv, ax.get_ylim()[1], f" {label}", va="top", fontsize=8, color="gray")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = Path(run.plots_dir) / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))

    for name, title, specs, refs, ylabel in PANELS:
        series = [(*_series(records, st, x, y), label) for st, x, y, label in specs]
        panel(name, title, series, refs, specs[0][1], ylabel)
    mle_epochs = ((run.read_config() or {}).get("oracle") or {}).get("mle_epochs")
    oracle, start = oracle_timeline(records, mle_epochs)
    marks = (((start, "adversarial rounds"),) if oracle[1][0] else ())
    panel("oracle_nll.png", "NLL-oracle", oracle, ORACLE_LINES, "generator epoch (MLE, then adversarial rounds)",
          "NLL-oracle (nats per token)", marks)
    if not written:
        raise SeqGANError(f"{run.metrics_path} has no metrics to plot yet")
    return {"plots": written}
