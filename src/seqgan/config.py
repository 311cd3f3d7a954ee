"""Run configuration: nested dataclasses loaded from a YAML preset plus dotted overrides.

`load_config("tiny", ["pretrain.lr=1e-3"])` returns a validated `Config`. Unknown keys and
values of the wrong type raise `ConfigError` naming the key. Presets live in `configs/`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seqgan.errors import ConfigError
from seqgan.models.discriminator import DiscriminatorConfig
from seqgan.models.generator import GeneratorConfig

PRESET_DIR = Path(__file__).parent / "configs"
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass
class DataConfig:
    corpus: str = "chitchat"  # chitchat | dailydialog | jsonl | tsv
    path: str | None = None  # file or folder for dailydialog/jsonl/tsv
    download_url: str = "http://yanran.li/files/ijcnlp_dailydialog.zip"
    download_sha256: str | None = None
    cache_dir: str = "~/.cache/seqgan"
    context_turns: int = 1  # previous utterances joined into the context (1 = the original project)
    context_separator: str = " <sep> "
    split: list[float] = field(default_factory=lambda: [0.9, 0.05, 0.05])
    max_len: int = 64  # tokens kept per context / response (eos kept)
    max_chars: int = 2000  # a longer utterance is skipped and counted
    max_dialogues: int | None = None  # use only the first N dialogues (after a seeded shuffle)
    lowercase: bool = False
    # the split's, the max_dialogues sample's and the tokenizer's seed (None: runtime.seed); fixed,
    # runs with other training seeds share one test set
    seed: int | None = None


@dataclass
class TokenizerConfig:
    vocab_size: int = 8000
    model_type: str = "bpe"  # bpe | unigram
    character_coverage: float = 1.0  # every character seen in training gets a piece (0.9995 dropped digits)
    max_sentences: int = 300000  # sentences sampled to train SentencePiece


@dataclass
class ModelConfig:
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)


@dataclass
class PretrainConfig:
    """Generator MLE pretraining."""

    epochs: int = 10
    max_steps: int | None = None
    max_minutes: float | None = None  # the stage's time budget over all its runs (None: none)
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    batch_tokens: int = 4096  # token budget per batch (context + response tokens)
    log_every: int = 50


@dataclass
class SampleConfig:
    """How responses are sampled (generation, evaluation, chat)."""

    strategy: str = "sample"  # greedy | sample | beam
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    num_beams: int = 4
    max_len: int = 40
    batch_size: int = 256


@dataclass
class DiscriminatorTrainConfig:
    """Discriminator pretraining (and the d-steps of adversarial training)."""

    rounds: int = 5  # SeqGAN: 50 rounds of fresh negatives ...
    epochs_per_round: int = 1  # ... x 3 epochs
    pairs_per_round: int | None = 20000  # real pairs used per round (None = all)
    mismatch_share: float = 0.2  # share of negatives that are real responses to other contexts
    # start D's token embeddings from the pretrained generator's (needs equal embed_dim)
    init_embeddings: bool = False
    lr: float = 1e-4
    weight_decay: float = 0.01
    batch_size: int = 64
    label_smoothing: float = 0.0
    grad_clip: float = 1.0
    log_every: int = 50


@dataclass
class AdversarialConfig:
    objective: str = "seqgan"  # seqgan | penalty
    estimator: str = "reinforce"  # penalty only: reinforce | gumbel
    steps: int = 100  # adversarial rounds (each: g_steps generator steps, then d_steps)
    max_minutes: float | None = None  # the stage's time budget over all its runs (None: none)
    g_steps: int = 1
    d_steps: int = 1  # SeqGAN: 5 x (fresh negatives, 3 epochs)
    d_epochs: int = 1
    d_pairs: int = 2048  # real pairs per d-step
    batch_size: int = 64
    lr: float = 1e-4
    grad_clip: float = 1.0
    rollouts: int = 16
    rollout_update: float = 0.8  # beta <- r * beta + (1 - r) * theta
    rollout_chunk: int = 4096  # rows decoded at once in rollouts (bounds memory)
    baseline: str = "batch_mean"  # none | moving_average | batch_mean (the other alive rows' mean)
    baseline_decay: float = 0.9
    normalize_rewards: bool = False
    penalty_lambda: float = 0.5
    gumbel_tau: float = 1.0
    mle_every: int = 1  # teacher-forcing MLE step every N g-steps (0 = off)
    mle_weight: float = 1.0
    entropy_coef: float = 0.0
    kl_coef: float = 0.0  # KL(G || pretrained G) regulariser against collapse
    temperature: float = 1.0  # sampling temperature of G during training
    max_len: int | None = None  # longest sampled response in g-steps (None: sample.max_len)
    eval_every: int = 20
    best_metric: str = "valid_ppl"  # valid_ppl | distinct_2 | fooling_rate
    log_every: int = 5


@dataclass
class OracleConfig:
    """The SeqGAN paper's synthetic benchmark (DESIGN.md, oracle section)."""

    params: str | None = None  # .npz of the original code's oracle; None = N(0,1) from the seed
    vocab_size: int = 5000
    seq_len: int = 20
    embed_dim: int = 32
    hidden_dim: int = 32
    num_samples: int = 9984
    batch_size: int = 64
    generator: str = "lstm"  # lstm | transformer
    discriminator: str = "cnn"  # cnn | transformer
    gen_lr: float = 0.01
    gen_init_std: float = 0.1
    grad_clip: float = 5.0
    mle_epochs: int = 120
    d_pretrain_rounds: int = 50
    d_epochs: int = 3
    d_embed_dim: int = 64
    d_dropout: float = 0.25
    d_l2: float = 0.2
    d_lr: float = 1e-4
    adv_rounds: int = 200
    adv_d_steps: int = 5
    adv_d_epochs: int = 3
    rollouts: int = 16
    rollout_update: float = 0.8
    # the generator step's loss: sum over the batch's tokens (the original), or row_mean (each
    # sequence's sum averaged over rows, 1/batch_size of it, as the dialogue objective)
    pg_loss: str = "sum"
    eval_every: int = 5


@dataclass
class EvalConfig:
    split: str = "test"
    max_pairs: int | None = 2000  # contexts sampled for BLEU / diversity (None = all)
    two_sample_test: bool = True  # train a fresh classifier real vs generated
    num_examples: int = 5  # sample exchanges printed


@dataclass
class RuntimeConfig:
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "fp32"  # fp32 | bf16 | fp16
    seed: int = 1234
    threads: int = 0  # torch intra-op threads; 0 = all cores
    compile: bool = False
    tensorboard: bool = False
    checkpoint_every: int = 500  # steps
    checkpoint_minutes: float = 5.0
    max_nonfinite: int = 10  # non-finite steps in a row before the stage stops
    progress: bool = True


@dataclass
class Config:
    name: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    discriminator: DiscriminatorTrainConfig = field(default_factory=DiscriminatorTrainConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


# Sections whose values define artifacts already on disk: a run can never change them.
FROZEN_SECTIONS = ("data", "tokenizer", "model")
# The oracle experiment reads no corpus and no tokenizer: of these, only its models' sections
# (its own section has its own check, which lets a run go further than it was first set to).
ORACLE_FROZEN_SECTIONS = ("model",)

CHOICES = {
    "data.corpus": ("chitchat", "dailydialog", "jsonl", "tsv"),
    "tokenizer.model_type": ("bpe", "unigram"),
    "model.generator.arch": ("transformer", "lstm"),
    "model.discriminator.arch": ("transformer", "cnn"),
    "sample.strategy": ("greedy", "sample", "beam"),
    "adversarial.objective": ("seqgan", "penalty"),
    "adversarial.estimator": ("reinforce", "gumbel"),
    "adversarial.baseline": ("none", "moving_average", "batch_mean"),
    "adversarial.best_metric": ("valid_ppl", "distinct_2", "fooling_rate"),
    "oracle.generator": ("lstm", "transformer"),
    "oracle.discriminator": ("cnn", "transformer"),
    "oracle.pg_loss": ("sum", "row_mean"),
    "eval.split": ("train", "valid", "test"),
    "runtime.device": ("auto", "cpu", "cuda", "mps"),
    "runtime.precision": ("fp32", "bf16", "fp16"),
}


# ---------------------------------------------------------------------------- conversion


class _Override(str):
    """A command-line value: its text, and its YAML reading for non-string fields."""

    parsed: Any = None


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check/convert one YAML value against a type annotation; raise naming the key."""
    if isinstance(value, _Override):
        if tp is str or (typing.get_origin(tp) in (typing.Union, types.UnionType) and str in typing.get_args(tp)
                         and value.parsed is not None):
            raw = str(value)
            if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"" and isinstance(value.parsed, str):
                return value.parsed  # quoted: the text inside, spaces kept (key=" | ")
            return raw
        value = value.parsed
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        # YAML 1.1 reads 1e-4 (no dot) as a string; take it as the number it plainly is
        if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            raise ConfigError(f"unknown config key '{key}'")
        kwargs[k] = _convert(v, hints[k], key)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(data: dict) -> Config:
    cfg = _build(Config, data)
    validate(cfg)
    return cfg


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}"""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


# ---------------------------------------------------------------------------- loading


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config {path} is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    except (ValueError, RecursionError) as e:  # e.g. an integer of more digits than Python converts
        raise ConfigError(f"config {path}: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of sections")
    return data


def resolve_preset(name_or_path: str) -> tuple[str, dict]:
    """Return (name, raw dict) for a preset name or a YAML path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():  # a folder named like a preset does not hide it
        if not path.is_file():
            raise ConfigError(f"config file not found: {name_or_path}")
        data = read_yaml(path)
        return str(data.get("name", path.stem)), data
    preset = PRESET_DIR / f"{name_or_path}.yaml"
    if not preset.is_file():
        raise ConfigError(
            f"unknown preset '{name_or_path}' (presets: {', '.join(preset_names())}; or a .yaml path)"
        )
    data = read_yaml(preset)
    data.setdefault("name", name_or_path)
    return name_or_path, data


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has no key")
    value = _Override(raw.strip())
    try:
        value.parsed = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError, RecursionError):  # kept as text: the key's type check says what is wrong
        value.parsed = raw
    return key, value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set dotted keys in a raw config dict. Key existence and types are checked by _build."""
    for text in overrides:
        key, value = parse_override(text)
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"unknown config key '{key}'")
            node = child
        node[parts[-1]] = value
    return data


def load_config(name_or_path: str = "chitchat-cpu", overrides: list[str] | None = None) -> Config:
    """Load a preset (or YAML path), apply dotted overrides, validate."""
    _, data = resolve_preset(name_or_path)
    return from_dict(apply_overrides(data, list(overrides or [])))


def check_discriminator_reads_context(cfg: Config) -> None:
    """The dialogue discriminator must read what `conditional` says. Checked where its training
    is still to come (prepare of a new run, `run`, discriminator pretraining), not in `validate`:
    a run made with it before stays readable (evaluate, chat, export)."""
    if cfg.model.discriminator.arch == "cnn" and cfg.model.discriminator.conditional:
        raise ConfigError("model.discriminator.arch=cnn reads no context (it is the SeqGAN paper's, for the oracle "
                          "experiment): set model.discriminator.conditional=false to judge responses alone, or use "
                          "arch=transformer (in a new --run-dir once the data are prepared: the model section is "
                          "frozen)")


def validate(cfg: Config) -> None:
    """Value checks beyond types; each error names the key."""
    flat = flatten(to_dict(cfg))
    for key, value in flat.items():  # NaN passes no comparison below, so it is refused first
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{key}: must be a finite number, got {value}")
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(f"{key}: must be one of {', '.join(allowed)}, got {flat[key]!r}")
    positive = [
        "data.context_turns", "data.max_len", "data.max_chars", "tokenizer.vocab_size",
        "pretrain.batch_tokens", "sample.max_len", "sample.num_beams", "sample.batch_size",
        "discriminator.batch_size", "adversarial.batch_size", "adversarial.rollouts",
        "adversarial.rollout_chunk", "oracle.vocab_size", "oracle.seq_len", "oracle.batch_size",
        "oracle.num_samples", "oracle.rollouts", "oracle.embed_dim", "oracle.hidden_dim", "oracle.d_embed_dim",
        "oracle.eval_every", "oracle.d_epochs", "oracle.adv_d_epochs", "runtime.checkpoint_every",
        "pretrain.log_every", "discriminator.log_every", "adversarial.log_every", "adversarial.eval_every",
        "adversarial.g_steps", "tokenizer.max_sentences", "pretrain.epochs", "discriminator.epochs_per_round",
        "adversarial.d_pairs", "discriminator.rounds", "pretrain.grad_clip", "discriminator.grad_clip",
        "adversarial.grad_clip", "adversarial.gumbel_tau", "runtime.checkpoint_minutes", "runtime.max_nonfinite",
        *(f"model.{m}.{k}" for m in ("generator", "discriminator")
          for k in ("embed_dim", "hidden_dim", "ff_dim", "num_layers", "num_heads", "max_len")),
    ]
    for key in positive:
        if flat[key] <= 0:
            raise ConfigError(f"{key}: must be positive, got {flat[key]}")
    for key in ("pretrain.lr", "discriminator.lr", "adversarial.lr", "adversarial.temperature", "oracle.gen_lr",
                "oracle.d_lr", "oracle.grad_clip", "oracle.gen_init_std"):
        if not flat[key] > 0:
            raise ConfigError(f"{key}: must be positive, got {flat[key]}")
    for key in ("oracle.mle_epochs", "oracle.d_pretrain_rounds", "oracle.adv_rounds", "oracle.adv_d_steps",
                "oracle.d_l2", "pretrain.warmup_steps", "adversarial.steps",
                "adversarial.d_steps", "adversarial.d_epochs", "adversarial.mle_every", "adversarial.mle_weight",
                "adversarial.penalty_lambda", "adversarial.entropy_coef", "adversarial.kl_coef", "runtime.threads"):
        if not flat[key] >= 0:
            raise ConfigError(f"{key}: must be zero or more, got {flat[key]}")
    for key in ("model.generator.dropout", "model.discriminator.dropout", "pretrain.label_smoothing",
                "discriminator.label_smoothing", "adversarial.baseline_decay", "oracle.d_dropout"):
        if not 0.0 <= flat[key] < 1.0:
            raise ConfigError(f"{key}: must be in [0, 1), got {flat[key]}")
    if not 0.0 <= cfg.pretrain.min_lr_ratio <= 1.0:
        raise ConfigError(f"pretrain.min_lr_ratio: must be in [0, 1], got {cfg.pretrain.min_lr_ratio}")
    if not 0.0 < cfg.tokenizer.character_coverage <= 1.0:
        raise ConfigError(f"tokenizer.character_coverage: must be in (0, 1], got {cfg.tokenizer.character_coverage}")
    for key, most in (("tokenizer.vocab_size", 1_000_000), ("runtime.threads", 4096)):
        if flat[key] > most:
            raise ConfigError(f"{key}: must be at most {most:,}, got {flat[key]}")
    for key in ("model.discriminator.filter_sizes", "model.discriminator.num_filters"):
        if not flat[key] or any(v <= 0 for v in flat[key]):
            raise ConfigError(f"{key}: positive integers, got {flat[key]}")
    for key in ("data.max_dialogues", "pretrain.max_steps", "pretrain.max_minutes", "discriminator.pairs_per_round",
                "adversarial.max_minutes", "eval.max_pairs"):
        if flat[key] is not None and not flat[key] > 0:
            raise ConfigError(f"{key}: must be positive (or null for no limit), got {flat[key]}")
    if flat["eval.num_examples"] < 0:
        raise ConfigError(f"eval.num_examples: must be zero or more, got {flat['eval.num_examples']}")
    for key in ("adversarial.rollout_update", "oracle.rollout_update"):
        if not 0.0 <= flat[key] <= 1.0:
            raise ConfigError(f"{key}: must be in [0, 1], got {flat[key]}")
    for key in ("model.generator", "model.discriminator"):
        m = getattr(cfg.model, key.split(".")[1])
        if m.arch == "transformer" and m.hidden_dim % m.num_heads:
            raise ConfigError(f"{key}.hidden_dim ({m.hidden_dim}) must divide by num_heads ({m.num_heads})")
    g = cfg.model.generator
    if g.arch == "lstm" and g.conditional:
        raise ConfigError("model.generator.arch=lstm reads no context (it is the oracle experiment's generator): "
                          "set model.generator.conditional=false for an unconditional one, or use arch=transformer")
    if g.arch == "transformer" and g.max_len < max(cfg.data.max_len, cfg.sample.max_len):
        raise ConfigError(f"model.generator.max_len ({g.max_len}) must be at least data.max_len "
                          f"({cfg.data.max_len}) and sample.max_len ({cfg.sample.max_len})")
    a_len = cfg.adversarial.max_len
    if a_len is not None and (a_len <= 0 or (g.arch == "transformer" and a_len > g.max_len)):
        raise ConfigError(f"adversarial.max_len: must be positive and at most model.generator.max_len "
                          f"({g.max_len}), got {a_len}")
    if cfg.data.context_turns > 1 and not cfg.data.context_separator:
        raise ConfigError("data.context_separator: must not be empty when data.context_turns > 1 (it marks "
                          "where one turn ends)")
    s = cfg.data.split
    if len(s) != 3 or any(x < 0 for x in s) or abs(sum(s) - 1.0) > 1e-6 or s[0] <= 0:
        raise ConfigError(f"data.split: three non-negative shares summing to 1, got {s}")
    d = cfg.model.discriminator
    if cfg.discriminator.init_embeddings and d.embed_dim != g.embed_dim:
        raise ConfigError(f"discriminator.init_embeddings: model.discriminator.embed_dim ({d.embed_dim}) must equal "
                          f"model.generator.embed_dim ({g.embed_dim})")
    if not 0.0 <= cfg.discriminator.mismatch_share < 1.0:
        raise ConfigError("discriminator.mismatch_share: must be in [0, 1)")
    if cfg.sample.temperature < 0 or not 0 < cfg.sample.top_p <= 1 or cfg.sample.top_k < 0:
        raise ConfigError("sample: temperature >= 0, 0 < top_p <= 1, top_k >= 0")
    if cfg.tokenizer.vocab_size < 16:
        raise ConfigError("tokenizer.vocab_size: must be at least 16")
    for key, seed in (("runtime.seed", cfg.runtime.seed), ("data.seed", cfg.data.seed)):
        if seed is not None and not 0 <= seed < 2**32:
            raise ConfigError(f"{key}: must be from 0 to 2**32 - 1, got {seed}")
    b = cfg.pretrain.betas
    if len(b) != 2 or not all(0.0 <= x < 1.0 for x in b):
        raise ConfigError(f"pretrain.betas: two numbers in [0, 1), got {b}")
    for key in ("pretrain.weight_decay", "discriminator.weight_decay"):
        if not flat[key] >= 0:
            raise ConfigError(f"{key}: must be zero or more, got {flat[key]}")
    if len(d.filter_sizes) != len(d.num_filters):
        raise ConfigError(f"model.discriminator.filter_sizes ({len(d.filter_sizes)}) and num_filters "
                          f"({len(d.num_filters)}) must have the same length")


def diff(a: dict, b: dict, sections: tuple[str, ...] | None = None) -> list[str]:
    """Dotted keys whose values differ between two config dicts (optionally only in sections)."""
    fa, fb = flatten(a), flatten(b)
    keys = sorted(set(fa) | set(fb))
    if sections is not None:
        keys = [k for k in keys if k.split(".")[0] in sections]
    return [k for k in keys if fa.get(k) != fb.get(k)]
