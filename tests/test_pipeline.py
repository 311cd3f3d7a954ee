"""The whole pipeline through the real CLI on the tiny preset: every stage, skipping, chat, evaluate."""

import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import dialogues, one_line, run_cli, write_jsonl

from seqgan.rundir import RunDir

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    corpus = write_jsonl(root / "c.jsonl", dialogues(80, seed=3))
    run = root / "run"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = run_cli("run", "--config", "tiny", "--run-dir", run, "data.corpus=jsonl", f"data.path={corpus}", "--json")
    assert rc == 0
    result = json.loads(out.getvalue())  # stdout is that one object: the stages' progress lines go to stderr
    assert result["pretrain_generator"]["step"] > 0 and "evaluate" in result
    return run


def test_run_writes_every_artifact(finished_run):
    r = RunDir(finished_run)
    for stage in ("generator", "discriminator", "adversarial"):
        assert r.checkpoint(stage, "best").exists() and r.checkpoint(stage, "last").exists(), stage
    assert (finished_run / "samples" / "valid.txt").exists()
    ev = json.loads(r.eval_path.read_text(), parse_constant=_no_constant)  # strict JSON: no NaN
    assert set(ev["generators"]) == {"pretrained", "adversarial"}
    for m in ev["generators"].values():
        assert m["test_ppl"] > 1 and 0 <= m["distinct_2"] <= 1 and 0 <= m["fooling_rate"] <= 1
        assert m["test_ppl"] == pytest.approx(math.exp(m["test_nll"]), rel=1e-3)
        assert 0 <= m["texygen_bleu_4"] <= m["texygen_bleu_3"] <= m["texygen_bleu_2"] <= 1
    stages = {rec["stage"] for rec in r.read_metrics()}
    assert {"prepare", "pretrain_generator", "pretrain_discriminator", "adversarial", "evaluate"} <= stages


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def test_evaluate_writes_null_for_an_undefined_metric(finished_run, tmp_path, capsys):
    # one test pair: no second sample for Self-BLEU and too few pairs for the two-sample test
    other = tmp_path / "one"
    shutil.copytree(finished_run, other)
    (other / "eval.json").unlink()
    assert run_cli("evaluate", "--run-dir", other, "--json", "eval.max_pairs=1") == 0
    out = json.loads(capsys.readouterr().out, parse_constant=_no_constant)
    saved = json.loads((other / "eval.json").read_text(), parse_constant=_no_constant)
    for m in (out["generators"]["pretrained"], saved["generators"]["pretrained"]):
        assert m["self_bleu_4"] is None and m["two_sample_accuracy"] is None and m["test_ppl"] > 1
    assert run_cli("evaluate", "--compare", str(other), "--json") == 0  # null reads back as "-"
    assert json.loads(capsys.readouterr().out)["runs"][str(other)] == saved


def test_evaluate_compare_refuses_a_damaged_eval_json(finished_run, tmp_path, capsys):
    other = tmp_path / "damaged"
    shutil.copytree(finished_run, other)
    good = (other / "eval.json").read_text()
    for text in (good[: len(good) // 2], "[]", '{"run": "x"}', good.replace('"test_ppl": ', '"test_ppl": "high", "x": ')):
        (other / "eval.json").write_text(text)
        assert run_cli("evaluate", "--compare", str(finished_run), str(other)) == 2
        err = one_line(capsys.readouterr().err)
        assert "eval.json" in err and f"seqgan evaluate --run-dir {other}" in err
    assert (other / "eval.json").read_text() == text  # left as it was


def test_evaluate_refuses_an_unreadable_adversarial_checkpoint(finished_run, tmp_path, capsys):
    # a damaged checkpoint is an error, not a stage that has not run: eval.json keeps both columns
    other = tmp_path / "broken"
    shutil.copytree(finished_run, other)
    before = (other / "eval.json").read_text()
    RunDir(other).checkpoint("adversarial", "best").write_bytes(b"garbage")
    assert run_cli("evaluate", "--run-dir", other) == 2
    assert "adversarial" in one_line(capsys.readouterr().err)
    assert (other / "eval.json").read_text() == before


def test_second_run_skips_finished_stages(finished_run, capsys):
    before = RunDir(finished_run).checkpoint("adversarial", "last").stat().st_mtime_ns
    assert run_cli("run", "--run-dir", finished_run, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prepare"]["reused"] and out["pretrain_generator"]["already_complete"]
    assert out["pretrain_discriminator"]["already_complete"] and out["train"]["already_complete"]
    assert RunDir(finished_run).checkpoint("adversarial", "last").stat().st_mtime_ns == before


def test_respond_json_and_checkpoint_choice(finished_run, capsys):
    assert run_cli("respond", "--run-dir", finished_run, "--json", "--checkpoint", "pretrained", "hello how are you") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["generator"] == "pretrained" and isinstance(out["response"], str) and out["tokens"] >= 0
    assert run_cli("respond", "--run-dir", finished_run, "hi") == 0
    assert capsys.readouterr().out.endswith("\n")


def test_respond_errors_are_one_line(finished_run, tmp_path, capsys):
    assert run_cli("respond", "--run-dir", finished_run, "   ") == 2
    assert "empty" in one_line(capsys.readouterr().err)
    assert run_cli("respond", "--run-dir", finished_run, "--checkpoint", str(tmp_path / "nope.pt"), "hi") == 2
    assert "checkpoint not found" in one_line(capsys.readouterr().err)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"random bytes, not a checkpoint")
    assert run_cli("respond", "--run-dir", finished_run, "--checkpoint", str(bad), "hi") == 2
    assert "not a readable checkpoint" in one_line(capsys.readouterr().err)
    assert run_cli("respond", "--run-dir", finished_run, "--checkpoint", "best", "hi") == 2
    assert "--checkpoint takes pretrained, adversarial or the path" in one_line(capsys.readouterr().err)


def test_input_that_is_not_utf8_is_answered(finished_run, capsys):
    from seqgan.chat import chat_loop
    from seqgan.config import from_dict

    # a command-line argument keeps undecodable bytes as surrogates: "caf\xe9"
    assert run_cli("respond", "--run-dir", finished_run, "--json", "caf\udce9 ok") == 0
    assert isinstance(json.loads(capsys.readouterr().out)["response"], str)
    r = RunDir(finished_run)
    stdin = io.TextIOWrapper(io.BytesIO(b"caf\xe9 ok\nhi\n/quit\n"), encoding="utf-8")
    assert chat_loop(from_dict(r.read_config()), r, None, stdin=stdin, stdout=io.StringIO()) == {"turns": 2}


@pytest.mark.parametrize("closed, args", [(0, ("chat",)), (1, ("status",)), (1, ("compare", "--n", "2"))])
def test_a_closed_stdin_or_stdout_is_end_of_input_or_nowhere_to_print(finished_run, closed, args):
    """Started with `<&-` or `>&-` (Python's sys.stdin or sys.stdout is then None)."""
    proc = subprocess.run([sys.executable, "-m", "seqgan", *args, "--run-dir", str(finished_run)],
                          stdin=subprocess.DEVNULL if closed else None, stdout=None if closed else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=120,
                          preexec_fn=lambda: os.close(closed), env={**os.environ, "PYTHONPATH": SRC})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-1000:]


def test_chat_repl_reset_and_quit(finished_run, monkeypatch):
    from seqgan.chat import Responder, chat_loop
    from seqgan.config import from_dict

    calls = []
    real = Responder.respond

    def spy(self, turns, opts):
        calls.append((len(turns), opts.temperature))
        return real(self, turns, opts)

    monkeypatch.setattr(Responder, "respond", spy)
    r = RunDir(finished_run)
    cfg = from_dict(r.read_config())
    out = io.StringIO()
    lines = ("hello\n/set temperature 0.5\n/set max_len 5000\n/set temperature nan\n/set num_beams 0\n"
             + "x" * 4001 + "\n"  # refused as respond refuses it, not cut and answered
             "how are you\n/reset\nhi\n/quit\nafter quit\n")
    assert chat_loop(cfg, r, None, stdin=io.StringIO(lines), stdout=out) == {"turns": 3}
    text = out.getvalue()
    assert text.count("bot> ") == 3 and "(new conversation)" in text and "usage:" not in text
    assert "(error: a turn is longer than 4000 characters)" in text
    # out-of-range values are refused with a line, and the options stay as they were
    assert text.count("(not set: ") == 3 and "max_len must be 1 to" in text and "temperature must be" in text
    assert "(temperature = 0.5)" in text  # a value set is confirmed
    # the history grows by the reply and the next turn, /reset empties it, /set applies at once
    assert calls == [(1, cfg.sample.temperature), (3, 0.5), (1, 0.5)]


def test_evaluate_json_and_plot(finished_run, capsys, monkeypatch):
    from matplotlib.axes import Axes

    assert run_cli("evaluate", "--run-dir", finished_run, "--json") == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert "test perplexity" in captured.err and "adversarial" in out["generators"]
    margin = out["generators"]["adversarial"]["two_sample_margin"]  # 1.96 standard errors of n examples at 0.5
    assert "its 95% noise at 0.5" in captured.err and round((1.96 / margin) ** 2 * 0.25) % 2 == 0
    ylabels, set_ylabel = [], Axes.set_ylabel
    monkeypatch.setattr(Axes, "set_ylabel", lambda ax, label, *a, **k: ylabels.append(label) or set_ylabel(ax, label))
    assert run_cli("plot", "--run-dir", finished_run, "--json") == 0
    plots = json.loads(capsys.readouterr().out)["plots"]
    assert any(p.endswith("pretrain_generator.png") for p in plots)
    assert len(ylabels) == len(plots) and "nats per token" in ylabels  # every panel says what its y axis is


def test_stage_without_prerequisite_names_the_command(tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", dialogues(20))
    run = tmp_path / "r"
    assert run_cli("prepare", "--config", "tiny", "--run-dir", run, "data.corpus=jsonl", f"data.path={corpus}") == 0
    capsys.readouterr()
    assert run_cli("train", "--run-dir", run) == 2
    assert "seqgan pretrain generator" in capsys.readouterr().err
    assert run_cli("pretrain", "generator", "--config", "tiny", "--run-dir", tmp_path / "empty") == 2
    assert "seqgan prepare" in capsys.readouterr().err


def test_evaluate_compare_two_runs(finished_run, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(finished_run, other)
    assert run_cli("evaluate", "--compare", str(finished_run), str(other), "--json") == 0
    captured = capsys.readouterr()
    runs = json.loads(captured.out)["runs"]
    assert list(runs) == [str(finished_run), str(other)]
    for d in (finished_run, other):
        assert runs[str(d)] == json.loads((Path(d) / "eval.json").read_text())
    assert "pretrained" in captured.err and str(other) in captured.err
    # the same directory twice is one column set
    assert run_cli("evaluate", "--compare", str(finished_run), str(finished_run), "--json") == 0
    assert list(json.loads(capsys.readouterr().out)["runs"]) == [str(finished_run)]
    assert run_cli("evaluate", "--compare", "/nonexistent/run") == 2
    capsys.readouterr()
    # a setting after the runs is not a run directory, and compare would not apply it
    assert run_cli("evaluate", "--compare", str(finished_run), str(other), "eval.max_pairs=3") == 2
    assert "settings such as eval.max_pairs=3 do not apply" in one_line(capsys.readouterr().err)
    assert run_cli("evaluate", "--compare", str(finished_run), "--seed", "5") == 2
    assert "settings such as --seed 5 do not apply" in one_line(capsys.readouterr().err)
    # an eval.json written before the diversity metrics counted words is flagged
    old = json.loads((other / "eval.json").read_text())
    old.pop("diversity_unit")
    (other / "eval.json").write_text(json.dumps(old))
    assert run_cli("evaluate", "--compare", str(finished_run), str(other)) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and str(other) in notes[0] and "SentencePiece pieces" in notes[0]
    # the default run directory's config has nothing to do with the runs compared
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text("pretrain:\n  old_key: 1\n")
    assert run_cli("evaluate", "--run-dir", broken, "--compare", str(finished_run), str(other)) == 0
    capsys.readouterr()


def test_plot_series_of_a_resumed_stage_keep_one_point_per_step():
    from seqgan.plot import _series

    records = [{"stage": "oracle", "phase": "adversarial", "index": i, "nll_oracle": v}
               for i, v in [(0, 9.0), (5, 8.9), (10, 8.8), (5, 8.9), (10, 8.7), (15, 8.6)]]
    records.append({"stage": "oracle", "phase": "mle", "index": 20, "nll_oracle": 9.1})
    records.append({"stage": "oracle", "phase": "adversarial", "index": 20, "nll_oracle": float("nan")})
    assert _series(records, "oracle", "index", "nll_oracle", "adversarial") == ([0, 5, 10, 15], [9.0, 8.9, 8.7, 8.6])
    # an attempt killed after step 30, resumed from its checkpoint at 10, stopped by its budget at 20:
    # the old point at 30 belongs to a trajectory that was thrown away
    killed = [{"stage": "s", "step": x, "loss": v} for x, v in [(10, 1.0), (20, 2.0), (30, 1.0), (20, 2.5)]]
    assert _series(killed, "s", "step", "loss") == ([10, 20], [1.0, 2.5])
    # a hand-edited metrics.jsonl: a step that is no number is skipped, not a crash
    edited = [{"stage": "s", "step": "x", "loss": 1.0}, {"stage": "s", "step": None, "loss": 1.0},
              {"stage": "s", "step": 3, "loss": "high"}, {"stage": "s", "step": 4, "loss": 0.5}]
    assert _series(edited, "s", "step", "loss") == ([4], [0.5])


def test_the_oracle_plot_puts_the_adversarial_rounds_after_the_mle_epochs(tmp_path, capsys):
    from seqgan.plot import oracle_timeline

    run = tmp_path / "oracle"
    assert run_cli("oracle", "--config", "tiny", "--run-dir", run) == 0  # 4 MLE epochs, 2 rounds
    assert run_cli("plot", "--run-dir", run, "--json") == 0
    assert [p.rsplit("/", 1)[-1] for p in json.loads(capsys.readouterr().out)["plots"]] == ["oracle_nll.png"]
    records = RunDir(run).read_metrics()
    (mle_x, _, _), (adv_x, adv_y, _) = oracle_timeline(records, 4)[0]
    assert mle_x == [0, 2, 3] and adv_x == [4, 5] and len(adv_y) == 2
    assert oracle_timeline(records, None)[1] == 4  # without the config: one past the last MLE epoch


def test_chat_contexts_lowercase_each_turn_as_training_does(finished_run):
    from dataclasses import replace

    from seqgan.chat import encode_context
    from seqgan.config import from_dict
    from seqgan.data.tokenizer import Tokenizer
    from seqgan.errors import SeqGANError

    r = RunDir(finished_run)
    cfg = from_dict(r.read_config())
    cfg.data = replace(cfg.data, lowercase=True, context_turns=2, context_separator=" <SEP> ")
    tok = Tokenizer.load(r.spm_model)
    ids = encode_context(tok, ["Hello THERE", "How are You"], cfg).tolist()
    assert ids == tok.encode("hello there <SEP> how are you")[-cfg.data.max_len:]  # the separator keeps its case
    assert ids != tok.encode("hello there <sep> how are you")[-cfg.data.max_len:]
    # training cuts a dialogue at an empty utterance: the turns before one are not context
    cut = encode_context(tok, ["Hello THERE", " ", "How are You"], cfg).tolist()
    assert cut == tok.encode("how are you")[-cfg.data.max_len:]
    with pytest.raises(SeqGANError, match="empty"):
        encode_context(tok, ["Hello THERE", ""], cfg)  # nothing after the cut
    from seqgan.chat import split_turns

    assert split_turns("Hello THERE |  | How are You") == ["Hello THERE", "", "How are You"]  # respond cuts there too


def test_chat_shows_an_empty_reply_and_starts_the_context_again(finished_run, monkeypatch):
    from seqgan.artifacts import load_tokenizer
    from seqgan.chat import Responder, chat_loop, encode_context
    from seqgan.config import from_dict

    contexts = []

    def empty_first(self, turns, opts):
        contexts.append(encode_context(self.tokenizer, turns, self.cfg).tolist())
        return {"response": "" if len(contexts) == 1 else "fine"}

    monkeypatch.setattr(Responder, "respond", empty_first)
    r = RunDir(finished_run)
    out = io.StringIO()
    assert chat_loop(from_dict(r.read_config()), r, None, stdin=io.StringIO("hello\nhow are you\n"), stdout=out) == {
        "turns": 2}
    assert "bot> (an empty reply; the next turn starts a new context)" in out.getvalue()
    cfg = from_dict(r.read_config())
    assert contexts[1] == encode_context(load_tokenizer(r), ["how are you"], cfg).tolist()  # "hello" is cut


def test_run_says_when_a_stage_predates_the_generator_it_started_from(finished_run, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns(".lock"))
    stored = RunDir(run).read_config()
    more = stored["pretrain"]["epochs"] + 1
    assert run_cli("run", "--run-dir", run, f"pretrain.epochs={more}") == 0  # the generator goes on
    err = capsys.readouterr().err
    assert "checkpoints/discriminator predates the current generator checkpoint" in err
    assert "checkpoints/adversarial predates the current generator checkpoint" in err
    assert run_cli("run", "--run-dir", finished_run) == 0  # nothing changed: no note
    assert "predates" not in capsys.readouterr().err
    # the adversarial stage starts from the discriminator's last checkpoint, not its best
    d_last = RunDir(run).checkpoint("discriminator", "last")
    later = RunDir(run).checkpoint("adversarial", "last").stat().st_mtime + 60
    os.utime(d_last, (later, later))  # as if discriminator pretraining went on without a better AUC
    assert run_cli("run", "--run-dir", run) == 0
    assert "checkpoints/adversarial predates the current generator and discriminator checkpoint" in \
        capsys.readouterr().err


def test_texygen_bleu_takes_every_test_response_as_a_reference(finished_run):
    """Texygen's BLEU scores a response against the whole reference set (it took only the
    references of the sampled contexts); Self-BLEU is that of the samples; the diversity metrics
    count words, as BLEU does (they counted SentencePiece pieces)."""
    import numpy as np
    import torch

    from seqgan import artifacts
    from seqgan.config import from_dict
    from seqgan.data.dataset import PairDataset
    from seqgan.data.tokenizer import EOS_ID
    from seqgan.evaluate import evaluate_generator
    from seqgan.metrics.bleu import self_bleu, texygen_bleu, words
    from seqgan.metrics.diversity import distinct_n, mean_length, repetition_rate

    r = RunDir(finished_run)
    cfg = from_dict(r.read_config())
    cfg.eval.two_sample_test = False
    tok = artifacts.load_tokenizer(r)
    gen, _ = artifacts.load_generator(cfg, r, tok, torch.device("cpu"), "pretrained")
    data = PairDataset.load(r.split_path("test"))
    idx = np.arange(3)  # three of the split's contexts
    m, fakes = evaluate_generator(cfg, gen, tok, data, idx, None, torch.device("cpu"))
    everyone = [words(data.response_text(i)) for i in range(len(data))]
    assert len(everyone) > len(idx)
    said = [words(tok.decode(f.tolist())) for f in fakes]
    assert m["texygen_bleu_2"] == pytest.approx(texygen_bleu(said, everyone, 2), abs=1e-12)
    assert m["self_bleu_4"] == pytest.approx(self_bleu(said, 4), abs=1e-12)
    assert m["mean_length"] == pytest.approx(mean_length(said)) and m["distinct_2"] == pytest.approx(distinct_n(said, 2))
    assert m["repetition_rate"] == repetition_rate(said)
    pieces = [[int(t) for t in f if t != EOS_ID] for f in fakes]
    assert mean_length(said) != mean_length(pieces)  # the fixture tells words from pieces
