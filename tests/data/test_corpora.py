import json

import pytest
from support import dialogues, write_dailydialog_folder, write_dailydialog_text, write_jsonl

from seqgan.config import DataConfig
from seqgan.data.corpora import read_corpus, read_dailydialog, read_jsonl, read_tsv
from seqgan.errors import DataError


def test_dailydialog_single_file(tmp_path):
    d = dialogues(5)
    c = read_dailydialog(write_dailydialog_text(tmp_path / "dialogues_text.txt", d))
    assert c.dialogues == d and c.official_split is None


def test_dailydialog_official_folder_keeps_the_split(tmp_path):
    root = write_dailydialog_folder(tmp_path / "dd", n=30)
    c = read_dailydialog(root)
    assert len(c.dialogues) == 30
    assert c.official_split.count("train") == 18 and c.official_split.count("valid") == 6
    assert c.official_split.count("test") == 6
    # the folder one level up (as extracted from the zip) is found too
    assert len(read_dailydialog(tmp_path).dialogues) == 30


def test_dailydialog_tokenised_line_format(tmp_path):
    p = tmp_path / "d.txt"
    p.write_text("Say , Jim , how about going ? __eou__ Sure . __eou__ \n"
                 "I ’ m fine , thanks . __eou__ Don ’ t worry ! It ’ s $ 5 ( 50 % off ) ; ok ? __eou__\n",
                 encoding="utf-8")
    # the spacing undone: as people type, and as chat and serve receive it
    assert read_dailydialog(p).dialogues == [["Say, Jim, how about going?", "Sure."],
                                             ["I'm fine, thanks.", "Don't worry! It's $5 (50% off); ok?"]]


def test_dailydialog_official_splits_still_zipped(tmp_path):
    """The official archive unzipped once: its splits are train.zip, validation.zip and test.zip."""
    import io
    import zipfile

    d = dialogues(12, seed=2)
    root = tmp_path / "ijcnlp_dailydialog"
    root.mkdir()
    (root / "dialogues_text.txt").write_text("".join(" __eou__ ".join(x) + " __eou__\n" for x in d))
    for split, part in (("train", d[:8]), ("validation", d[8:10]), ("test", d[10:])):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(f"{split}/dialogues_{split}.txt", "".join(" __eou__ ".join(x) + " __eou__\n" for x in part))
        (root / f"{split}.zip").write_bytes(buf.getvalue())
    for path in (root, tmp_path):  # the folder itself, or the one it was unzipped into
        c = read_dailydialog(path)
        assert c.dialogues == d and c.official_split == ["train"] * 8 + ["valid"] * 2 + ["test"] * 2
    assert sorted(p.name for p in root.iterdir()) == ["dialogues_text.txt", "test.zip", "train.zip",
                                                      "validation.zip"]  # nothing extracted
    # extraction stopped after train: the other splits are read from their zips (validation's
    # holding a macOS resource fork first, which is no dialogues file)
    (root / "train").mkdir()
    (root / "train" / "dialogues_train.txt").write_text("".join(" __eou__ ".join(x) + " __eou__\n" for x in d[:8]))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("__MACOSX/validation/._dialogues_validation.txt", b"\x00\x05\x16\x07 not text")
        z.writestr("validation/dialogues_validation.txt", "".join(" __eou__ ".join(x) + " __eou__\n" for x in d[8:10]))
    (root / "validation.zip").write_bytes(buf.getvalue())
    c = read_dailydialog(root)
    assert c.dialogues == d and c.official_split == ["train"] * 8 + ["valid"] * 2 + ["test"] * 2
    (root / "train.zip").write_bytes(b"not a zip")
    assert read_dailydialog(root).dialogues == d  # train is extracted: its zip is not read
    (root / "train" / "dialogues_train.txt").unlink()
    with pytest.raises(DataError, match="train.zip is not a valid zip archive"):
        read_dailydialog(root)
    # a readable archive whose member lost bytes in the middle (a download cut and resumed badly)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("train/dialogues_train.txt", "".join(" __eou__ ".join(x) + " __eou__\n" for x in d[:8]) * 50)
    data = buf.getvalue()
    (root / "train.zip").write_bytes(data[: len(data) // 2 - 25] + data[len(data) // 2 + 25:])
    with pytest.raises(DataError, match="train.zip is (damaged|not a valid zip archive)"):
        read_dailydialog(root)


def test_jsonl_both_shapes_and_counted_bad_lines(tmp_path, capsys):
    p = tmp_path / "c.jsonl"
    p.write_text("\n".join([
        json.dumps({"dialogue": ["a b", "c d", "e f"]}),
        json.dumps({"context": ["x", "y"], "response": "z"}),
        json.dumps({"context": "q", "response": "r"}),
        "{not json",
        json.dumps({"dialogue": [1, 2]}),
        '{"dialogue": ["\\ud800 a lone surrogate", "x"]}',  # valid JSON, but no text: the tokenizer refused it
        '{"context": "\\ud83d\\ude00", "response": "a pair of them is one character"}',
    ]) + "\n")
    c = read_jsonl(p)
    assert c.dialogues == [["a b", "c d", "e f"], ["x", "y", "z"], ["q", "r"], ["\U0001F600", "a pair of them is one character"]]
    assert c.pair_records == [False, True, True, True]  # a context/response record is one pair
    assert c.skipped["bad_lines"] == 3
    assert "skipped 3 malformed" in capsys.readouterr().err


def test_records_split_at_newlines_only_and_odd_json_is_a_bad_line(tmp_path, capsys):
    p = tmp_path / "c.jsonl"
    p.write_text("\n".join([
        json.dumps({"dialogue": ["one\u2028two", "three\x85four"]}, ensure_ascii=False),  # separators inside
        "[" * 100_000 + "]" * 100_000,  # valid JSON nested too deep for the parser
        '{"dialogue": [' + "9" * 5000 + "]}",  # an integer longer than Python converts
    ]) + "\r\n", encoding="utf-8")
    c = read_jsonl(p)
    assert c.dialogues == [["one two", "three four"]] and c.skipped["bad_lines"] == 2
    t = tmp_path / "c.tsv"
    t.write_text("a\u2028b\tc\r\nd\te\n", encoding="utf-8")
    assert read_tsv(t).dialogues == [["a b", "c"], ["d", "e"]]


def test_tsv(tmp_path):
    p = tmp_path / "c.tsv"
    p.write_text("hi there\thello\nno tab here\nhow are you\tfine  thanks\n")
    c = read_tsv(p)
    assert c.dialogues == [["hi there", "hello"], ["how are you", "fine thanks"]]
    assert c.skipped["bad_lines"] == 1


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"\x00\x01\x02binary", "looks binary"),
    (b"\xff\xfe\xfa bad utf8", "not UTF-8"),
])
def test_unreadable_files(tmp_path, content, message):
    p = tmp_path / "f.jsonl"
    p.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_jsonl(p)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_corpus(DataConfig(corpus="tsv", path=str(tmp_path / "nope.tsv")))
    with pytest.raises(DataError, match="is a directory"):
        read_corpus(DataConfig(corpus="tsv", path=str(tmp_path)))
    with pytest.raises(DataError, match="needs data.path"):
        read_corpus(DataConfig(corpus="jsonl"))


def test_dailydialog_without_separators(tmp_path):
    p = tmp_path / "d.txt"
    p.write_text("just some text\nwithout separators\n")
    with pytest.raises(DataError, match="__eou__"):
        read_dailydialog(p)


def test_all_malformed_jsonl(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text("{bad\n[1,2]\n")
    with pytest.raises(DataError, match="no valid JSONL line"):
        read_jsonl(p)


def test_jsonl_fixture_roundtrip(tmp_path):
    d = dialogues(3)
    assert read_jsonl(write_jsonl(tmp_path / "x.jsonl", d)).dialogues == d


def test_a_damaged_cached_archive_is_removed_with_one_error(tmp_path):
    """The downloaded zip is read (its splits as nested zips); one whose member's deflate data is
    damaged is removed like one that is no zip at all, so the next run downloads it again."""
    import io
    import zipfile

    from seqgan.data.download import _extract

    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("train/dialogues_train.txt", "hello . __eou__ hi . __eou__\n" * 400)
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ijcnlp_dailydialog/train.zip", inner.getvalue())
        z.writestr("ijcnlp_dailydialog/dialogues_text.txt", "hello . __eou__ hi . __eou__\n" * 400)
    good = outer.getvalue()
    zip_path = tmp_path / "ijcnlp_dailydialog.zip"
    zip_path.write_bytes(good)
    _extract(zip_path, tmp_path / "extracted")
    assert (tmp_path / "extracted" / "ijcnlp_dailydialog" / "train" / "dialogues_train.txt").exists()

    info = zipfile.ZipFile(io.BytesIO(good)).getinfo("ijcnlp_dailydialog/dialogues_text.txt")
    at = info.header_offset + 30 + len(info.filename) + info.compress_size // 2  # inside its deflate stream
    zip_path.write_bytes(good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1:])
    with pytest.raises(DataError, match="is not a valid zip archive"):
        _extract(zip_path, tmp_path / "again")
    assert not zip_path.exists() and not (tmp_path / "again").exists()
