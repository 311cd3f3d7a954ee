import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from support import dialogues

from seqgan.data.batching import collate, shard_batches, token_budget_batches
from seqgan.data.dataset import PairDataset, encode_pairs, save_pairs
from seqgan.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, SEP, Tokenizer, train_tokenizer


def _tokenizer(tmp_path) -> Tokenizer:
    text = [u for d in dialogues(60) for u in d]
    return train_tokenizer(text, tmp_path / "tok", vocab_size=80, max_sentences=10000)


def test_special_ids_roundtrip_and_sep(tmp_path):
    tok = _tokenizer(tmp_path)
    assert tok.sp.pad_id() == PAD_ID and tok.sp.bos_id() == BOS_ID and tok.sp.eos_id() == EOS_ID
    assert tok.sp.unk_id() == 0
    s = "how are you doing today"
    assert tok.decode(tok.encode(s)) == s
    ids = tok.encode(f"hi {SEP} hello")
    assert ids.count(tok.sep_id) == 1  # the separator is one piece
    assert tok.decode(tok.encode(s) + [EOS_ID] + tok.encode("never")) == s  # decoding stops at eos
    assert tok.hash == Tokenizer.load(tok.path).hash
    # control characters are dropped, NUL too (SentencePiece made it the unknown piece)
    for c in "\0\x01\x7f":
        assert tok.encode(f"how{c} are you") == tok.encode("how are you"), repr(c)
        assert tok.encode_batch([f"how{c} are you", c]) == [tok.encode("how are you"), []], repr(c)


def test_rare_characters_keep_their_own_pieces(tmp_path):
    """Every character of the training text is encodable: with SentencePiece's 0.9995 coverage
    the rarest (on the chitchat corpus: 7, 9, X, $, %, ;) became unknown."""
    text = [u for d in dialogues(60) for u in d] + ["born in 1997, my Xbox cost $79; 50% off!"]
    tok = train_tokenizer(text, tmp_path / "tok", vocab_size=80, max_sentences=10000)
    s = "born in 1997, my Xbox cost $79; 50% off!"
    assert tok.decode(tok.encode(s)) == s and 0 not in tok.encode(s)  # 0: unk


def test_the_same_text_trains_the_same_tokenizer_bytes(tmp_path):
    a = _tokenizer(tmp_path / "a")
    b = _tokenizer(tmp_path / "b")  # another folder, another temp file: the bytes must not show it
    assert a.path.read_bytes() == b.path.read_bytes() and a.hash == b.hash
    assert str(tmp_path).encode() not in a.path.read_bytes()
    vocab = (tmp_path / "a" / "tok" / "spm.vocab").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == a.vocab_size and vocab[a.sep_id].split("\t")[0] == SEP


def test_a_tokenizer_trained_on_a_sample_of_the_sentences_is_the_same_in_every_process(tmp_path):
    """More sentences than tokenizer.max_sentences: the sample is seeded, so two processes (as a
    `prepare --force` later) train the same bytes; another seed samples other sentences."""
    script = ("import sys; from support import dialogues; from seqgan.data.tokenizer import train_tokenizer; "
              "from pathlib import Path; text = [u for d in dialogues(200) for u in d]; "
              "print(train_tokenizer(text, Path(sys.argv[1]), vocab_size=80, max_sentences=300, "
              "seed=int(sys.argv[2])).hash)")
    tests = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent / "src"), str(tests)])}

    def train(folder: str, seed: int) -> str:
        return subprocess.run([sys.executable, "-c", script, str(tmp_path / folder), str(seed)], env=env, text=True,
                              capture_output=True, check=True, timeout=120).stdout.strip()

    first = train("a", 0)
    assert train("b", 0) == first
    assert (tmp_path / "a" / "spm.model").read_bytes() == (tmp_path / "b" / "spm.model").read_bytes()
    text = [u for d in dialogues(200) for u in d]
    assert train_tokenizer(text, tmp_path / "c", vocab_size=80, max_sentences=300, seed=1).hash != first


def test_truncation_keeps_eos_and_recent_context(tmp_path):
    tok = _tokenizer(tmp_path)
    long = " ".join(["hello"] * 50)
    ctx, resp = encode_pairs(tok, [long + " weather"], [long], max_len=8)
    assert len(ctx[0]) == 8 and ctx[0][-1] == tok.encode("weather")[-1]  # the most recent tokens kept
    assert len(resp[0]) == 8 and resp[0][-1] == EOS_ID


def _dataset(tmp_path, n=200):
    rng = np.random.default_rng(0)
    ctx = [list(rng.integers(4, 50, rng.integers(1, 20))) for _ in range(n)]
    resp = [list(rng.integers(4, 50, rng.integers(1, 15))) + [EOS_ID] for _ in range(n)]
    save_pairs(tmp_path / "s.npz", ctx, resp, list(range(n)), ["c"] * n, ["r"] * n)
    return PairDataset.load(tmp_path / "s.npz"), ctx, resp


def test_batches_respect_budget_and_cover_every_index_once(tmp_path):
    data, _, _ = _dataset(tmp_path)
    lengths = data.lengths()
    batches = token_budget_batches(lengths, 120, shuffle=True, seed=1)
    allidx = np.concatenate(batches)
    assert sorted(allidx.tolist()) == list(range(len(data)))
    for b in batches:  # rows x (longest context + longest response)
        assert len(b) == 1 or len(b) * lengths[b].max(0).sum() <= 120
    padded = sum(len(b) * lengths[b].max(0).sum() for b in batches)
    assert padded < 1.3 * lengths.sum()  # bucketing keeps padding small
    flat = lengths.sum(1)  # 1-D lengths: a batch costs rows x the longest row
    batches_1d = token_budget_batches(flat, 120, shuffle=False)
    assert sorted(np.concatenate(batches_1d).tolist()) == list(range(len(data)))
    assert all(len(b) == 1 or len(b) * flat[b].max() <= 120 for b in batches_1d)
    assert [b.tolist() for b in token_budget_batches(lengths, 120, shuffle=True, seed=1)] == \
        [b.tolist() for b in batches]
    assert [b.tolist() for b in token_budget_batches(lengths, 120, shuffle=True, seed=2)] != \
        [b.tolist() for b in batches]
    shards = [shard_batches(batches, r, 2) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(batches) // 2


def test_collate_shapes_and_teacher_forcing(tmp_path):
    data, ctx, resp = _dataset(tmp_path)
    b = collate(data, np.array([0, 1, 2]))
    assert b["src"].shape[0] == 3 and b["tgt_in"].shape == b["tgt_out"].shape
    for r in range(3):
        L = len(resp[r])
        assert b["tgt_out"][r, :L].tolist() == resp[r]
        assert b["tgt_in"][r, 0] == BOS_ID and b["tgt_in"][r, 1:L].tolist() == resp[r][:-1]
        assert bool(b["tgt_mask"][r, :L].all()) and not bool(b["tgt_mask"][r, L:].any())
        assert b["src"][r, : len(ctx[r])].tolist() == ctx[r] and int(b["src_mask"][r].sum()) == len(ctx[r])
    assert (b["tgt_out"][~b["tgt_mask"]] == PAD_ID).all()
    assert torch.equal(b["src"][~b["src_mask"]], torch.full_like(b["src"][~b["src_mask"]], PAD_ID))


def test_a_training_sentence_over_64_kib_is_not_dropped(tmp_path):
    """SentencePiece skips longer sentences without a word (e.g. a context of many long turns)."""
    text = [u for d in dialogues(60) for u in d] + ["жук " * 17_500]  # 70,000 bytes
    tok = train_tokenizer(text, tmp_path / "tok", vocab_size=80, max_sentences=10000)
    assert 0 not in tok.encode("жук")  # its letters are pieces, not unknowns
