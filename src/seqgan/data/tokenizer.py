"""SentencePiece tokenizer: trained on the training split, ids unk 0, pad 1, bos 2, eos 3."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import sentencepiece as spm

from seqgan.errors import DataError

UNK_ID, PAD_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SEP = "<sep>"


def model_hash(data: bytes) -> str:
    """What checkpoints and the data manifest know a tokenizer by: the hash of its spm.model bytes."""
    return hashlib.sha256(data).hexdigest()


class Tokenizer:
    """A thin wrapper over a SentencePiece model with the project's special ids."""

    def __init__(self, model_path: str | Path):
        self.path = Path(model_path)
        data = self.path.read_bytes()
        self.sp = spm.SentencePieceProcessor(model_proto=data)
        self.hash = model_hash(data)
        self.vocab_size = self.sp.get_piece_size()
        self.sep_id = self.sp.piece_to_id(SEP)

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        try:
            return cls(path)
        except OSError as e:
            raise DataError(f"cannot read tokenizer {path}: {e.strerror}") from None
        except RuntimeError as e:
            raise DataError(f"{path} is not a SentencePiece model: {str(e).splitlines()[0][:200]}") from None

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text.replace("\0", ""))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # normalization drops every other control character; NUL alone would become the unknown piece
        return self.sp.encode([t.replace("\0", "") for t in texts], num_threads=os.cpu_count() or 1)

    def decode(self, ids: list[int]) -> str:
        """Text of ids up to the first eos; pad and bos are skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i in (PAD_ID, BOS_ID) or not 0 <= i < self.vocab_size:
                continue
            out.append(i)
        return self.sp.decode(out)


def train_tokenizer(sentences: list[str], out_dir: Path, vocab_size: int, model_type: str = "bpe",
                    character_coverage: float = 1.0, max_sentences: int = 300000, seed: int = 0) -> Tokenizer:
    """Train SentencePiece on `sentences`; write out_dir/spm.model and spm.vocab.

    The same sentences and settings give the same spm.model bytes, hence the same tokenizer hash,
    on any machine: the sentences are streamed (the model records no temp file or output path)
    and one trainer thread is used (the model records the thread count; on these corpora one
    thread trains as fast, and the pieces do not depend on it).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    sentences = [s.replace("\n", " ") for s in sentences if s.strip()]
    if not sentences:
        raise DataError("no text to train the tokenizer on")
    if len(sentences) > max_sentences:
        # sampled here, seeded: SentencePiece's own sampling (input_sentence_size) differs from one
        # process to the next whatever its seed, and so would the tokenizer; given no more
        # sentences than that, it takes them all, in order
        keep = np.sort(np.random.default_rng(seed).choice(len(sentences), max_sentences, replace=False))
        sentences = [sentences[i] for i in keep]
    # SentencePiece drops longer sentences unsaid; the default 64 KiB stays (it is in the model)
    longest = max(len(s.encode("utf-8")) for s in sentences)
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size, model_type=model_type,
            character_coverage=character_coverage, unk_id=UNK_ID, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID,
            user_defined_symbols=[SEP], hard_vocab_limit=False, input_sentence_size=max_sentences,
            shuffle_input_sentence=True, num_threads=1, minloglevel=2, max_sentence_length=max(1 << 16, longest),
        )
    except (RuntimeError, ValueError, OverflowError) as e:
        raise DataError(f"tokenizer training failed: {str(e).splitlines()[0][:200]}") from None
    (out_dir / "spm.model").write_bytes(model.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    (out_dir / "spm.vocab").write_text("".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n"
                                              for i in range(sp.get_piece_size())), encoding="utf-8")
    return Tokenizer.load(out_dir / "spm.model")
