"""`seqgan compare`: the same contexts, both generators and the reference, as markdown or HTML."""

from __future__ import annotations

import html
import json

from support import run_cli

from seqgan.compare import md_cell


def compare_json(capsys, *args) -> dict:
    assert run_cli("compare", *args, "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_markdown_on_stdout(full_run, capsys):
    assert run_cli("compare", "--run-dir", full_run, "--n", "4") == 0
    out = capsys.readouterr().out
    assert out.startswith("# seqgan compare")
    assert "| # | context | pretrained | adversarial | reference |" in out
    assert len([line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]) == 4


def test_markdown_file_has_contexts_references_and_both_responses(full_run, tmp_path, capsys):
    out = tmp_path / "cmp.md"
    result = compare_json(capsys, "--run-dir", full_run, "--n", "6", "--out", out)
    assert result["out"] == str(out) and result["split"] == "test"
    text = out.read_text()
    assert len(result["examples"]) == 6
    for k, ex in enumerate(result["examples"], 1):
        row = next(line for line in text.splitlines() if line.startswith(f"| {k} |"))
        cells = [md_cell(t) for t in ex["context"]] + [md_cell(ex[k]) for k in ("pretrained", "adversarial", "reference")]
        for cell in cells:
            assert cell in row, (cell, row)


def test_html_file_has_contexts_references_and_both_responses(full_run, tmp_path, capsys):
    out = tmp_path / "cmp.html"
    result = compare_json(capsys, "--run-dir", full_run, "--n", "5", "--split", "valid", "--out", out)
    text = out.read_text()
    assert text.startswith("<!doctype html>") and "<table>" in text
    assert "<th>pretrained</th><th>adversarial</th><th>reference</th>" in text
    for ex in result["examples"]:
        for turn in ex["context"]:
            assert f"<div>{html.escape(turn)}</div>" in text
        for k in ("pretrained", "adversarial", "reference"):
            assert (f">{html.escape(ex[k])}</td>" if ex[k].strip() else "(empty)") in text


def test_same_command_same_table(full_run, tmp_path, capsys):
    a, b = tmp_path / "a.md", tmp_path / "b.md"
    for path in (a, b):
        assert run_cli("compare", "--run-dir", full_run, "--n", "5", "--out", path, "sample.temperature=0.8") == 0
    assert a.read_text() == b.read_text() and "temperature 0.8" in a.read_text()


def test_bad_suffix_and_bad_values_exit_2_with_one_line(full_run, tmp_path, capsys):
    for args, needle in ((["--out", tmp_path / "cmp.txt"], ".md or .html"), (["--out", tmp_path / "cmp"], ".md or .html"),
                         (["--split", "dev"], "--split"), (["--n", "0"], "--n"), (["--n", "many"], "invalid int")):
        assert run_cli("compare", "--run-dir", full_run, *args) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_without_adversarial_generator_the_column_is_left_out(serve_runs, capsys):
    result = compare_json(capsys, "--run-dir", serve_runs["pretrained"], "--n", "3")
    assert result["generators"]["adversarial"]["available"] is False
    assert all("pretrained" in ex and "adversarial" not in ex for ex in result["examples"])
    assert run_cli("compare", "--run-dir", serve_runs["pretrained"], "--n", "3") == 0
    captured = capsys.readouterr()
    assert "| # | context | pretrained | reference |" in captured.out and "no adversarial generator" in captured.err


def test_the_generators_read_the_prepared_context_ids(full_run, capsys, monkeypatch):
    """Not the context text split again at the separator, which a turn may itself contain."""
    from seqgan.chat import Responder
    from seqgan.data.dataset import PairDataset
    from seqgan.rundir import RunDir

    seen = []
    real = Responder.respond_ids

    def spy(self, ids, opts):
        seen.extend(ids)
        return real(self, ids, opts)

    monkeypatch.setattr(Responder, "respond_ids", spy)
    result = compare_json(capsys, "--run-dir", full_run, "--n", "5")
    data = PairDataset.load(RunDir(full_run).split_path("test"))
    want = [data.context(ex["index"]) for ex in result["examples"]]
    assert len(seen) == 2 * len(want)  # both generators
    for got, ids in zip(seen, want + want, strict=True):
        assert list(got) == list(ids)
