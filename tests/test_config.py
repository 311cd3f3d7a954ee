import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import run_cli

from seqgan import config as C
from seqgan.errors import ConfigError


@pytest.mark.parametrize("name", C.preset_names())
def test_every_preset_loads_and_validates(name):
    cfg = C.load_config(name)
    assert cfg.name == name
    C.validate(cfg)
    assert C.from_dict(C.to_dict(cfg)) == cfg  # round trip through the YAML form


def test_presets_include_the_documented_ones():
    assert {"chitchat-cpu", "dailydialog-base", "tiny", "oracle-paper", "oracle-quick"} <= set(C.preset_names())
    base = C.load_config("dailydialog-base").model.generator
    assert (base.embed_dim, base.hidden_dim, base.ff_dim, base.num_layers, base.num_heads, base.max_len) == \
        (128, 256, 512, 3, 8, 100)
    assert base.share_layers and C.load_config("dailydialog-base").tokenizer.vocab_size == 10000


def test_overrides_set_nested_values_with_types():
    cfg = C.load_config("tiny", ["pretrain.lr=0.5", "model.generator.num_layers=4", "data.max_dialogues=null",
                                 "adversarial.objective=penalty", "data.split=[0.8, 0.1, 0.1]"])
    assert cfg.pretrain.lr == 0.5 and cfg.model.generator.num_layers == 4
    assert cfg.data.max_dialogues is None and cfg.adversarial.objective == "penalty"
    assert cfg.data.split == [0.8, 0.1, 0.1]


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    # YAML 1.1 (PyYAML) reads `1e-4` as a string; a float setting takes it as the number
    cfg = C.load_config("tiny", ["pretrain.lr=1e-4", "oracle.d_lr=2E-5", "adversarial.lr=+3e2"])
    assert (cfg.pretrain.lr, cfg.oracle.d_lr, cfg.adversarial.lr) == (1e-4, 2e-5, 300.0)
    p = tmp_path / "mine.yaml"
    p.write_text("pretrain:\n  lr: 5e-4\n")
    assert C.load_config(str(p)).pretrain.lr == 5e-4
    for bad in ("pretrain.lr=1e", "pretrain.lr=e5", "pretrain.lr=nan", "pretrain.epochs=1e3"):
        with pytest.raises(ConfigError, match="expected"):
            C.load_config("tiny", [bad])


@pytest.mark.parametrize("override, message", [
    ("pretrain.lrr=1", "unknown config key 'pretrain.lrr'"),
    ("nosection.x=1", "unknown config key 'nosection'"),
    ("pretrain.lr=fast", "pretrain.lr: expected a number"),
    ("pretrain.epochs=1.5", "pretrain.epochs: expected an integer"),
    ("model.generator.share_layers=maybe", "model.generator.share_layers: expected true or false"),
    ("adversarial.objective=wgan", "adversarial.objective: must be one of"),
    ("data.split=[0.5, 0.5]", "data.split"),
    ("model.generator.num_heads=3", "must divide by num_heads"),
    ("pretrain.lr", "must look like section.key=value"),
    ("oracle.eval_every=0", "oracle.eval_every: must be positive, got 0"),
    ("oracle.rollout_update=1.5", "oracle.rollout_update: must be in [0, 1], got 1.5"),
    ("adversarial.rollout_update=-0.1", "adversarial.rollout_update: must be in [0, 1]"),
    ("oracle.d_dropout=1", "oracle.d_dropout: must be in [0, 1), got 1"),
    ("oracle.adv_rounds=-1", "oracle.adv_rounds: must be zero or more, got -1"),
    ("oracle.grad_clip=0", "oracle.grad_clip: must be positive"),
    ("adversarial.temperature=0", "adversarial.temperature: must be positive, got 0"),
    ("adversarial.max_len=0", "adversarial.max_len: must be positive"),
    ("adversarial.max_len=1000", "adversarial.max_len: must be positive and at most model.generator.max_len"),
    ("eval.max_pairs=0", "eval.max_pairs: must be positive (or null for no limit), got 0"),
    ("pretrain.max_minutes=-1", "pretrain.max_minutes: must be positive (or null for no limit), got -1.0"),
    ("discriminator.pairs_per_round=0", "discriminator.pairs_per_round: must be positive"),
    ("discriminator.rounds=0", "discriminator.rounds: must be positive, got 0"),  # no checkpoint: train could not start
    ("eval.num_examples=-1", "eval.num_examples: must be zero or more, got -1"),
    ("model.generator.num_heads=0", "model.generator.num_heads: must be positive, got 0"),
    ("model.discriminator.num_layers=-1", "model.discriminator.num_layers: must be positive"),
    ("model.generator.dropout=2", "model.generator.dropout: must be in [0, 1), got 2.0"),
    ("pretrain.label_smoothing=2", "pretrain.label_smoothing: must be in [0, 1)"),
    ("discriminator.label_smoothing=1", "discriminator.label_smoothing: must be in [0, 1)"),
    ("pretrain.epochs=0", "pretrain.epochs: must be positive, got 0"),
    ("pretrain.grad_clip=-1", "pretrain.grad_clip: must be positive"),
    ("adversarial.gumbel_tau=0", "adversarial.gumbel_tau: must be positive"),
    ("adversarial.kl_coef=-1", "adversarial.kl_coef: must be zero or more"),
    ("tokenizer.vocab_size=99999999999", "tokenizer.vocab_size: must be at most 1,000,000"),
    ("tokenizer.max_sentences=-1", "tokenizer.max_sentences: must be positive"),
    ("runtime.threads=99999999999999999999", "runtime.threads: must be at most 4,096"),
    ("sample.temperature=.nan", "sample.temperature: must be a finite number, got nan"),
    ("pretrain.lr=.inf", "pretrain.lr: must be a finite number, got inf"),
    ("model.discriminator.filter_sizes=[0]", "model.discriminator.filter_sizes: positive integers"),
    ("model.generator.arch=lstm", "model.generator.arch=lstm reads no context"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        C.load_config("tiny", [override])


def test_bad_override_through_cli_exits_2_with_one_line(tmp_path, capsys):
    assert run_cli("prepare", "--config", "tiny", "--run-dir", tmp_path / "r", "pretrain.lr=abc") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pretrain.lr: expected a number" in err[0]
    assert not (tmp_path / "r").exists()


def test_unknown_preset_and_missing_yaml(tmp_path, capsys):
    assert run_cli("prepare", "--config", "nope", "--run-dir", tmp_path / "r") == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert run_cli("prepare", "--config", str(tmp_path / "x.yaml"), "--run-dir", tmp_path / "r") == 2
    assert "config file not found" in capsys.readouterr().err


def test_yaml_config_file(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("name: mine\npretrain:\n  epochs: 7\n")
    name, _ = C.resolve_preset(str(p))
    assert name == "mine" and C.load_config(str(p)).pretrain.epochs == 7
    p.write_text("pretrain: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        C.load_config(str(p))


def test_run_refuses_conflicting_frozen_config_naming_keys(tiny_run, capsys):
    rc = run_cli("prepare", "--config", "tiny", "--run-dir", tiny_run, "data.corpus=jsonl",
                 "model.generator.hidden_dim=64", "tokenizer.vocab_size=99")
    assert rc == 2
    err = capsys.readouterr().err
    assert "model.generator.hidden_dim" in err and "tokenizer.vocab_size" in err and "data.path" in err
    # a conflict that comes from the preset says so: the user gave no override of data.corpus
    assert run_cli("evaluate", "--config", "tiny", "--run-dir", tiny_run) == 2
    assert "drop these overrides or --config tiny (without it the run's config.yaml is used)" in capsys.readouterr().err


def test_oracle_defaults_to_the_quick_oracle_preset(monkeypatch, tmp_path):
    """Without --config it took chitchat-cpu, which has no oracle section: the full paper protocol
    (about 14 hours here), in runs/chitchat-cpu, a dialogue run's folder."""
    from seqgan.cli import build_parser, make_context

    monkeypatch.chdir(tmp_path)
    ctx = make_context(build_parser().parse_args(["oracle"]))
    assert ctx.cfg.name == "oracle-quick" and str(ctx.run.root) == "runs/oracle-quick"
    assert make_context(build_parser().parse_args(["evaluate"])).cfg.name == "chitchat-cpu"


def test_run_reads_its_own_config_when_no_preset_given(tiny_run):
    from seqgan.cli import build_parser, make_context

    ctx = make_context(build_parser().parse_args(["evaluate", "--run-dir", str(tiny_run), "pretrain.lr=0.1"]))
    assert ctx.cfg.name == "tiny" and ctx.cfg.data.corpus == "jsonl" and ctx.cfg.pretrain.lr == 0.1


def test_quoted_string_overrides_keep_their_spaces_and_lose_their_quotes():
    cfg = C.load_config("tiny", ['data.context_separator=" | "', "tokenizer.model_type='unigram'"])
    assert cfg.data.context_separator == " | " and cfg.tokenizer.model_type == "unigram"
    assert C.load_config("tiny", ["data.context_separator=<sep>"]).data.context_separator == "<sep>"


def test_to_json_writes_null_for_non_finite_numbers():
    import json

    import numpy as np
    import torch

    from seqgan.rundir import to_json

    obj = {"a": float("nan"), "b": [1.5, float("inf"), (np.float32("nan"), -float("inf"))],
           "c": {"d": np.float64(2.0), "e": torch.tensor(float("nan")), "f": 3}}
    text = to_json(obj)
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} written")) == {
        "a": None, "b": [1.5, None, [None, None]], "c": {"d": 2.0, "e": None, "f": 3}}


def test_every_example_in_the_top_level_help_parses():
    from seqgan.cli import EXAMPLES, build_parser

    commands = [line.split("#")[0].split()[1:] for line in EXAMPLES.splitlines() if line.startswith("  seqgan ")]
    assert len(commands) == 6
    for argv in commands:
        args = build_parser().parse_args(argv)
        assert args.command == argv[0] and all("=" in o for o in args.overrides)
    assert "examples:" in build_parser().format_help()


@pytest.mark.parametrize("args, message", [((), "the following arguments are required: -a/--action"),
                                           (("-a", "pretrain"), "-a pretrain needs -m generator|discriminator"),
                                           (("-a", "train", "-m", "generator"), "-a train takes no -m")])
def test_the_original_projects_command_line_refuses_in_one_line(args, message):
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "run"), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(root / "src")})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
