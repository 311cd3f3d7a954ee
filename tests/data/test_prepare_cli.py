"""`seqgan prepare` through the real CLI: outputs, reuse, bad input (exit 2, one line, nothing written)."""

import http.server
import io
import json
import os
import threading
import zipfile

import numpy as np
import pytest
from support import (
    dialogues,
    run_cli,
    write_dailydialog_folder,
    write_dailydialog_text,
    write_jsonl,
)

from seqgan import config as C
from seqgan.data.corpora import _fingerprint as manifest_fingerprint
from seqgan.data.prepare import _key
from seqgan.rundir import RunDir


def prepare(run, *overrides):
    return run_cli("prepare", "--config", "tiny", "--run-dir", run, "--json", *overrides)


def test_prepare_jsonl_outputs_and_reuse(tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", dialogues(40, seed=2))
    run = tmp_path / "run"
    assert prepare(run, "data.corpus=jsonl", f"data.path={corpus}") == 0
    out = json.loads(capsys.readouterr().out)
    n_pairs = sum(len(d) - 1 for d in dialogues(40, seed=2))
    assert sum(out["pairs"].values()) == n_pairs and out["dialogues"] == 40 and not out["reused"]
    assert out["vocab_size"] <= 120
    for f in ("config.yaml", "tokenizer/spm.model", "data/train.npz", "data/valid.npz", "data/test.npz"):
        assert (run / f).exists(), f
    with np.load(run / "data/train.npz") as z:
        assert len(z["context_offsets"]) - 1 == out["pairs"]["train"]
    assert prepare(run, "data.corpus=jsonl", f"data.path={corpus}") == 0
    again = json.loads(capsys.readouterr().out)
    assert again["reused"] and again["pairs"] == out["pairs"]


def test_a_corpus_edited_in_place_with_its_size_and_mtime_kept_is_prepared_again(tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", dialogues(40, seed=2))
    run = tmp_path / "run"
    assert prepare(run, "data.corpus=jsonl", f"data.path={corpus}") == 0
    capsys.readouterr()
    st = corpus.stat()
    text = corpus.read_text()
    word = next(w for w in text.split() if w.isalpha() and len(w) > 3)
    corpus.write_text(text.replace(word, word[::-1] if word[::-1] != word else word.upper()))  # same size
    os.utime(corpus, ns=(st.st_atime_ns, st.st_mtime_ns))  # as `cp -p` or an edit within the second keeps it
    assert corpus.stat().st_size == st.st_size
    assert prepare(run, "data.corpus=jsonl", f"data.path={corpus}") == 0
    assert not json.loads(capsys.readouterr().out)["reused"]


def test_a_run_keyed_by_size_and_mtime_is_up_to_date_once_and_then_keyed_by_content(tmp_path, capsys):
    """Runs prepared before the corpus was keyed by its content stay up to date (no refusal for
    their checkpoints' sake); their manifest then holds the content's key."""
    corpus = write_jsonl(tmp_path / "c.jsonl", dialogues(20, seed=3))
    run = RunDir(tmp_path / "r")
    assert prepare(run.root, "data.corpus=jsonl", f"data.path={corpus}") == 0
    capsys.readouterr()
    path = run.data_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    content_key = manifest["key"]
    cfg = C.from_dict(run.read_config())
    manifest["key"] = _key(cfg, manifest_fingerprint(corpus)["legacy_fingerprint"], manifest["data_seed"])
    path.write_text(json.dumps(manifest))
    assert prepare(run.root, "data.corpus=jsonl", f"data.path={corpus}") == 0
    assert json.loads(capsys.readouterr().out)["reused"]
    assert json.loads(path.read_text())["key"] == content_key


def test_a_relative_data_path_is_stored_absolute_so_the_run_goes_on_from_elsewhere(tmp_path, capsys, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_jsonl(tmp_path / "a" / "c.jsonl", dialogues(20, seed=3))
    monkeypatch.chdir(tmp_path / "a")
    assert prepare("r", "data.corpus=jsonl", "data.path=c.jsonl") == 0
    assert RunDir(tmp_path / "a" / "r").read_config()["data"]["path"] == str(tmp_path / "a" / "c.jsonl")
    assert prepare("r", "data.corpus=jsonl", "data.path=c.jsonl") == 0  # the same override: no conflict
    capsys.readouterr()
    monkeypatch.chdir(tmp_path / "b")  # from another directory, with the run's own config
    assert run_cli("prepare", "--run-dir", tmp_path / "a" / "r", "--json") == 0
    assert json.loads(capsys.readouterr().out)["reused"]


def test_a_run_stored_with_a_relative_data_path_keeps_it(tmp_path, capsys, monkeypatch):
    """Runs prepared before paths were stored absolute: the same override is the same config and key."""
    write_jsonl(tmp_path / "c.jsonl", dialogues(20, seed=3))
    monkeypatch.chdir(tmp_path)
    assert prepare("r", "data.corpus=jsonl", "data.path=c.jsonl") == 0
    capsys.readouterr()
    run = RunDir(tmp_path / "r")
    stored = run.read_config()
    stored["data"]["path"] = "c.jsonl"  # as such a run has it (its data key: the path as given)
    run.write_config(C.from_dict(stored))
    manifest = json.loads((tmp_path / "r" / "data" / "manifest.json").read_text())
    manifest["key"] = _key(C.from_dict(stored), manifest_fingerprint(tmp_path / "c.jsonl")["fingerprint"],
                           manifest["data_seed"])
    (tmp_path / "r" / "data" / "manifest.json").write_text(json.dumps(manifest))
    assert prepare("r", "data.corpus=jsonl", "data.path=c.jsonl") == 0
    assert json.loads(capsys.readouterr().out)["reused"]
    assert run.read_config()["data"]["path"] == "c.jsonl"


def test_prepare_dailydialog_folder_keeps_official_split(tmp_path, capsys):
    root = write_dailydialog_folder(tmp_path / "dd", n=30)
    assert prepare(tmp_path / "run", "data.corpus=dailydialog", f"data.path={root}", "data.max_dialogues=null") == 0
    out = json.loads(capsys.readouterr().out)
    d = dialogues(30)
    assert out["pairs"]["test"] == sum(len(x) - 1 for x in d[24:])


def _bad(tmp_path, name: str, content: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(content)
    return str(p)


@pytest.mark.parametrize("corpus, make, message", [
    ("jsonl", lambda t: str(t / "missing.jsonl"), "file not found"),
    ("jsonl", lambda t: _bad(t, "e.jsonl", b""), "is empty"),
    ("tsv", lambda t: _bad(t, "b.tsv", bytes(range(256)) * 4), "looks binary"),
    ("tsv", lambda t: _bad(t, "u.tsv", b"caf\xe9\tok\n"), "not UTF-8"),
    ("dailydialog", lambda t: _bad(t, "d.txt", b"hello there\nhow are you\n"), "__eou__"),
    ("jsonl", lambda t: _bad(t, "m.jsonl", b"{oops\n{\"x\": 1}\n"), "no valid JSONL line"),
    ("jsonl", lambda t: str(t), "is a directory"),
    ("dailydialog", lambda t: _bad(t, "l.txt", ("x" * 200_000 + " __eou__ y __eou__\n").encode()), "no (context, response) pair"),
    ("jsonl", lambda t: _bad(t, "two.jsonl", b'{"dialogue": ["a", "b"]}\n{"dialogue": ["c", "d"]}\n'),
     "the valid split has no (context, response) pair (0 of 2 dialogues"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, corpus, make, message):
    path = make(tmp_path)
    run = tmp_path / "run"
    rc = prepare(run, f"data.corpus={corpus}", f"data.path={path}")
    captured = capsys.readouterr()
    assert rc == 2
    lines = [ln for ln in captured.err.strip().splitlines() if not ln.startswith("warning:")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in captured.err
    assert not run.exists()


def test_data_seed_fixes_the_split_whatever_the_training_seed(tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", dialogues(40, seed=2))
    splits = {}
    for name, args in (("a", ["runtime.seed=1", "data.seed=7"]), ("b", ["runtime.seed=2", "data.seed=7"]),
                       ("c", ["runtime.seed=2"])):
        assert prepare(tmp_path / name, "data.corpus=jsonl", f"data.path={corpus}", *args) == 0
        capsys.readouterr()
        with np.load(tmp_path / name / "data/test.npz") as z:
            splits[name] = z["dialogue_ids"].tolist()
        assert RunDir(tmp_path / name).read_config()["data"]["seed"] == (None if name == "c" else 7)
    assert splits["a"] == splits["b"] != splits["c"]
    assert (tmp_path / "a/tokenizer/spm.model").read_bytes() == (tmp_path / "b/tokenizer/spm.model").read_bytes()
    assert prepare(tmp_path / "d", "data.corpus=jsonl", f"data.path={corpus}", "data.seed=-1") == 2
    assert "data.seed" in capsys.readouterr().err
    # unset, the data keeps the seed it was prepared with: a later training seed asks for no other split
    assert prepare(tmp_path / "c", "data.corpus=jsonl", f"data.path={corpus}", "runtime.seed=9") == 0
    assert json.loads(capsys.readouterr().out)["reused"]
    with np.load(tmp_path / "c/data/test.npz") as z:
        assert z["dialogue_ids"].tolist() == splits["c"]


def test_long_and_empty_utterances_are_counted_not_fatal(tmp_path, capsys):
    d = dialogues(20)
    d[0] = ["hi", "", "x" * 200_000, "hello", "how are you"]
    path = write_dailydialog_text(tmp_path / "d.txt", d)
    assert prepare(tmp_path / "run", "data.corpus=dailydialog", f"data.path={path}") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["skipped"]["long_utterances"] == 1 and out["skipped"]["empty_utterances"] == 1
    # "hi" stands alone once the empty turn cuts it off, but "hello" -> "how are you" is a pair
    assert out["skipped"]["dialogues_without_pairs"] == 0


def _official_zip() -> bytes:
    """The official archive's shape: ijcnlp_dailydialog/{train,validation,test}.zip inside a zip."""
    inner = {}
    d = dialogues(30, seed=5)
    parts = {"train": d[:20], "validation": d[20:25], "test": d[25:]}
    for split, ds in parts.items():
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(f"{split}/dialogues_{split}.txt", "".join(" __eou__ ".join(x) + " __eou__\n" for x in ds))
        inner[split] = buf.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for split, data in inner.items():
            z.writestr(f"ijcnlp_dailydialog/{split}.zip", data)
        z.writestr("ijcnlp_dailydialog/readme.txt", "test archive")
    return buf.getvalue()


@pytest.fixture
def http_server():
    payload = _official_zip()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/dd.zip":
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            elif self.path == "/cut.zip":  # the connection closes before Content-Length bytes came
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload[: len(payload) // 2])
                self.close_connection = True
            else:
                self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_dailydialog_download_from_local_server(tmp_path, capsys, http_server):
    import hashlib

    sha = hashlib.sha256(_official_zip()).hexdigest()
    rc = prepare(tmp_path / "run", "data.corpus=dailydialog", f"data.download_url={http_server}/dd.zip",
                 f"data.cache_dir={tmp_path / 'cache'}", f"data.download_sha256={sha}", "data.max_dialogues=null")
    assert rc == 0, capsys.readouterr().err
    out = json.loads(capsys.readouterr().out)
    assert out["dialogues"] == 30
    assert out["pairs"]["test"] == sum(len(x) - 1 for x in dialogues(30, seed=5)[25:])


@pytest.mark.parametrize("path, extra, message", [
    ("/missing.zip", [], "HTTP 404"),
    ("/dd.zip", ["data.download_sha256=" + "0" * 64], "does not match"),
    ("/cut.zip", [], "was cut off after"),
])
def test_failed_download_is_one_line(tmp_path, capsys, http_server, path, extra, message):
    rc = prepare(tmp_path / "run", "data.corpus=dailydialog", f"data.download_url={http_server}{path}",
                 f"data.cache_dir={tmp_path / 'cache'}", *extra)
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if "error" in ln]
    assert rc == 2 and len(err) == 1 and message in err[0]


def test_connection_refused_is_one_line(tmp_path, capsys):
    rc = prepare(tmp_path / "run", "data.corpus=dailydialog", "data.download_url=http://127.0.0.1:9/x.zip",
                 f"data.cache_dir={tmp_path / 'cache'}")
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if "error" in ln]
    assert rc == 2 and len(err) == 1 and "download of" in err[0]
