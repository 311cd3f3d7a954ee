"""Property-based tests: the corpus readers and the tokenizer path on arbitrary text and bytes.

A reader either returns dialogues of whitespace-normalized turns (a turn may be empty; `seqgan
prepare` counts and skips those) or raises DataError (one clear line); it never raises anything
else. Encoding never fails and gives ids
in range; decoding any id sequence gives a string.
"""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqgan.chat import encode_context
from seqgan.config import Config
from seqgan.data.corpora import EOU, detokenize_dailydialog, read_dailydialog, read_jsonl, read_tsv
from seqgan.data.tokenizer import BOS_ID, EOS_ID, Tokenizer
from seqgan.errors import DataError, SeqGANError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
utterance = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
junk = st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda s: s.encode("utf-8", "replace")))


def _read_or_data_error(reader, path):
    try:
        corpus = reader(path)
    except DataError as e:
        assert str(e) and "\n" not in str(e)
        return None
    for dialog in corpus.dialogues:
        for turn in dialog:
            assert turn == " ".join(turn.split())  # whitespace normalized
    return corpus


@SETTINGS
@given(data=junk)
def test_every_reader_takes_arbitrary_bytes(tmp_path, data):
    for reader, name in ((read_jsonl, "c.jsonl"), (read_tsv, "c.tsv"), (read_dailydialog, "dialogues_text.txt")):
        path = tmp_path / name
        path.write_bytes(data)
        _read_or_data_error(reader, path)


@SETTINGS
@given(dialogs=st.lists(st.lists(utterance, min_size=1, max_size=5), min_size=1, max_size=8))
def test_jsonl_keeps_any_dialogue_text(tmp_path, dialogs):
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"dialogue": d}) + "\n" for d in dialogs), encoding="utf-8")
    corpus = _read_or_data_error(read_jsonl, path)
    if corpus is not None:  # not an all-whitespace file
        assert corpus.dialogues == [[" ".join(t.split()) for t in d] for d in dialogs]


@SETTINGS
@given(dialogs=st.lists(st.lists(utterance.filter(lambda t: EOU not in t and "\x00" not in t and "\n" not in t and "\r" not in t
                                                  and t.strip() and not set(t) & set("\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")),
                                 min_size=1, max_size=5), min_size=1, max_size=8))
def test_dailydialog_lines_round_trip(tmp_path, dialogs):
    path = tmp_path / "dialogues_text.txt"
    path.write_text("".join(f" {EOU} ".join(d) + f" {EOU}\n" for d in dialogs), encoding="utf-8")
    corpus = _read_or_data_error(read_dailydialog, path)
    assert corpus is not None  # each line one dialogue, each utterance as typed (spacing undone)
    assert corpus.dialogues == [[detokenize_dailydialog(t) for t in d] for d in dialogs]


@SETTINGS
@given(text=st.text(max_size=400))
def test_tokenizer_encodes_any_text_in_range(tiny_run, text):
    tok = Tokenizer.load(tiny_run / "tokenizer" / "spm.model")
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert isinstance(tok.decode(ids), str)


@SETTINGS
@given(ids=st.lists(st.integers(min_value=-5, max_value=10_000), max_size=50))
def test_decode_any_ids(tiny_run, ids):
    tok = Tokenizer.load(tiny_run / "tokenizer" / "spm.model")
    text = tok.decode(ids)
    assert isinstance(text, str)
    if EOS_ID in ids:  # nothing after the first eos
        assert text == tok.decode(ids[: ids.index(EOS_ID)])


@SETTINGS
@given(turns=st.lists(st.text(max_size=300) | st.text(min_size=3990, max_size=4010), max_size=6))
def test_any_chat_context_encodes_within_the_model_limits_or_is_refused(tiny_run, turns):
    tok = Tokenizer.load(tiny_run / "tokenizer" / "spm.model")
    cfg = Config()
    try:
        ids = encode_context(tok, turns, cfg)
    except SeqGANError as e:  # empty, or a turn over the input limit: one line
        assert ("empty" in str(e) or "longer than" in str(e)) and "\n" not in str(e)
        return
    assert 0 < len(ids) <= cfg.data.max_len
    assert all(0 <= int(i) < tok.vocab_size and int(i) != BOS_ID for i in ids)


def test_a_typed_typographic_apostrophe_reads_as_dailydialog_training_text_does(tmp_path):
    """DailyDialog's training text has no `’` (the reader maps it to `'`); a phone types one."""
    from seqgan.data.tokenizer import train_tokenizer

    said = [detokenize_dailydialog(f"I ’ m {w} , isn ’ t it ?") for w in ("fine", "here", "late", "done")] * 50
    tok = train_tokenizer(said, tmp_path / "tok", vocab_size=60, max_sentences=10000)
    assert 0 not in tok.encode("I'm fine, isn't it?")  # the apostrophe is a known piece
    cfg = Config()
    cfg.data.corpus = "dailydialog"
    typed = encode_context(tok, ["I’m fine, isn‘t it"], cfg)
    assert typed.tolist() == encode_context(tok, ["I'm fine, isn't it"], cfg).tolist()
    assert detokenize_dailydialog("I ’ m fine") == "I'm fine"
    cfg.data.corpus = "jsonl"  # other corpora keep the character as their training text has it
    assert encode_context(tok, ["I’m fine"], cfg).tolist() != encode_context(tok, ["I'm fine"], cfg).tolist()
