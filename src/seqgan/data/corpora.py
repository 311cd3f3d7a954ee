"""Corpus readers: each yields dialogues (lists of utterances), with counted skips for bad lines.

`read_corpus(cfg.data, seed)` returns a `Corpus`: dialogues, the official split when the corpus
has one (DailyDialog's folder layout), and counts of what was skipped. Unreadable input raises
`DataError` with one clear line.
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
import sys
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from seqgan.config import DataConfig
from seqgan.errors import DataError

EOU = "__eou__"
DD_SPLITS = {"train": "train/dialogues_train.txt", "valid": "validation/dialogues_validation.txt",
             "test": "test/dialogues_test.txt"}


@dataclass
class Corpus:
    dialogues: list[list[str]]
    official_split: list[str] | None = None  # per dialogue: train | valid | test
    # per dialogue: True for a (context turns, response) record, whose one pair is its last turn
    # (its context turns are no responses); None: every dialogue gives all its pairs
    pair_records: list[bool] | None = None
    skipped: dict[str, int] = field(default_factory=lambda: {"bad_lines": 0})
    fingerprint: str = ""
    legacy_fingerprint: str = ""  # the files' size and whole-second mtime, as runs before 2026-11-28 keyed them


def _lines(text: str) -> list[str]:
    """Lines split at \\n only (a trailing \\r dropped): str.splitlines would also split inside a
    record at U+2028, U+2029, \\x85 and other separators that JSON and TSV text may hold."""
    return [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]


def normalize(text: str) -> str:
    return " ".join(text.split())


def read_text(path: Path) -> str:
    """A whole UTF-8 text file, or a DataError naming what is wrong with it."""
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a directory, expected a file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    return _decode(raw, path)


def _decode(raw: bytes, path: Path) -> str:
    """UTF-8 text of a file's bytes (a BOM dropped), or a DataError naming what is wrong."""
    if not raw.strip():
        raise DataError(f"{path} is empty")
    if b"\x00" in raw[:65536]:
        raise DataError(f"{path} looks binary (NUL bytes), expected UTF-8 text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (bad byte at offset {e.start})") from None


def _fingerprint(*paths: Path) -> dict[str, str]:
    """Corpus fields naming the input files by their content (sha256): an edit that keeps a
    file's size and mtime (within a second, or copied with `cp -p`) is still another corpus."""
    parts, legacy = [], []
    for p in paths:
        st = p.stat()
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        parts.append(f"{p.resolve()}:{st.st_size}:sha256={h.hexdigest()}")
        legacy.append(f"{p.resolve()}:{st.st_size}:{int(st.st_mtime)}")
    return {"fingerprint": "|".join(parts), "legacy_fingerprint": "|".join(legacy)}


def warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


# ----------------------------------------------------------------------------- chitchat


def read_chitchat() -> Corpus:
    """The chitchat-dataset package: each speaker turn (its messages joined) is one utterance."""
    try:
        import chitchat_dataset
    except ImportError:
        raise DataError("the chitchat corpus needs the 'chitchat-dataset' package (pip install chitchat-dataset)") from None
    from importlib.metadata import version

    dialogues = []
    for convo in chitchat_dataset.Dataset().values():
        turns = [normalize(" ".join(m.get("text", "") for m in turn)) for turn in convo.get("messages", [])]
        dialogues.append(turns)
    return Corpus(dialogues, fingerprint=f"chitchat-dataset=={version('chitchat-dataset')}")


# ----------------------------------------------------------------------------- dailydialog


_DD_SPACING = [
    (re.compile(r" ([,.!?;:%)\]}])"), r"\1"),  # no space before closing punctuation
    (re.compile(r"([(\[{$]) "), r"\1"),  # nor after opening
    (re.compile(r"(\w) ' (s|m|re|ve|ll|d|t)\b", re.IGNORECASE), r"\1'\2"),  # I ' m -> I'm, don ' t -> don't
    (re.compile(r"(\w) n't\b", re.IGNORECASE), r"\1n't"),
]


APOSTROPHES = str.maketrans({"’": "'", "‘": "'"})  # typographic -> typed


def detokenize_dailydialog(text: str) -> str:
    """DailyDialog's text is tokenized (`I ’ m fine , thanks .`); people type `I'm fine, thanks.`,
    which is what chat and serve receive. Undo the spacing (and the typographic apostrophe: chat
    and serve map a typed one alike) so that training text and typed input encode alike."""
    text = normalize(text).translate(APOSTROPHES)
    for pattern, repl in _DD_SPACING:
        text = pattern.sub(repl, text)
    return text


def parse_dailydialog(text: str, path: Path) -> list[list[str]]:
    if EOU not in text:
        raise DataError(f"{path}: no '{EOU}' separators found; is this a DailyDialog dialogues file?")
    dialogues = []
    for line in _lines(text):
        if not line.strip():
            continue
        parts = line.split(EOU)
        if parts and not parts[-1].strip():
            parts = parts[:-1]
        dialogues.append([detokenize_dailydialog(p) for p in parts])
    return dialogues


def _zip_of(path: Path, split: str) -> Path:
    return path / f"{DD_SPLITS[split].split('/')[0]}.zip"  # train.zip, validation.zip, test.zip


def _zipped_split(z: Path, split: str) -> str:
    """The split's dialogues file read from inside its zip (as the official archive holds it)."""
    name = DD_SPLITS[split].split("/")[1]
    try:
        with zipfile.ZipFile(z) as zf:
            # the file itself, not a macOS copy's resource fork (__MACOSX/.../._dialogues_train.txt)
            member = next((m for m in zf.namelist() if m.rsplit("/", 1)[-1] == name
                           and not m.startswith("__MACOSX/")), None)
            if member is None:
                raise DataError(f"{z}: no {name} inside")
            return _decode(zf.read(member), z / member)
    except zipfile.BadZipFile:
        raise DataError(f"{z} is not a valid zip archive") from None
    except (OSError, EOFError, zlib.error) as e:  # a member cut short or damaged inside a readable archive
        if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM):
            raise DataError(f"cannot read {z}: {e.strerror}") from None
        raise DataError(f"{z} is damaged ({name} cannot be read: {e}); download it again") from None


def _has_splits(path: Path) -> bool:
    return any((path / rel).exists() or _zip_of(path, s).is_file() for s, rel in DD_SPLITS.items())


def read_dailydialog(path: Path) -> Corpus:
    """The official folder (train/validation/test kept, extracted or still as train.zip, ...) or
    one dialogues_text.txt."""
    if not path.is_dir():
        return Corpus(parse_dailydialog(read_text(path), path), **_fingerprint(path))
    files = {s: path / rel for s, rel in DD_SPLITS.items() if (path / rel).exists()}
    # a split still zipped beside others extracted (extraction stopped midway) is read from its zip
    zips = {s: _zip_of(path, s) for s in DD_SPLITS if s not in files and _zip_of(path, s).is_file()}
    if not files and not zips:
        nested = [p for p in sorted(path.iterdir()) if p.is_dir() and _has_splits(p)]
        if nested:
            return read_dailydialog(nested[0])
        whole = path / "dialogues_text.txt"
        if whole.exists():
            return read_dailydialog(whole)
        raise DataError(f"{path}: no DailyDialog files found (expected {', '.join(DD_SPLITS.values())}, "
                        "the official train.zip, validation.zip and test.zip, or dialogues_text.txt)")
    if "train" not in files and "train" not in zips:
        raise DataError(f"{path}: missing {DD_SPLITS['train']}" + (" (train.zip)" if zips else ""))
    dialogues, split = [], []
    for s in DD_SPLITS:
        if s in files:
            d = parse_dailydialog(read_text(files[s]), files[s])
        elif s in zips:
            d = parse_dailydialog(_zipped_split(zips[s], s), zips[s])
        else:
            continue
        dialogues += d
        split += [s] * len(d)
    return Corpus(dialogues, official_split=split, **_fingerprint(*files.values(), *zips.values()))


# ----------------------------------------------------------------------------- jsonl / tsv


LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # JSON may escape one ("\\ud800"); no UTF-8 text holds it


def _turns(value, key: str) -> list[str] | None:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(v, str) and not LONE_SURROGATE.search(v) for v in value):
        return list(value)
    return None


def read_jsonl(path: Path) -> Corpus:
    """{"dialogue": [..]} or {"context": str | [..], "response": str} per line."""
    text = read_text(path)
    dialogues, bad, pair_records = [], 0, []
    for _n, line in enumerate(_lines(text), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):  # malformed, an over-long integer, or nested too deep
            bad += 1
            continue
        is_pair = isinstance(obj, dict) and "dialogue" not in obj
        if isinstance(obj, dict) and "dialogue" in obj:
            turns = _turns(obj["dialogue"], "dialogue")
        elif isinstance(obj, dict) and "context" in obj and isinstance(obj.get("response"), str):
            ctx = _turns(obj["context"], "context")
            turns = None if ctx is None else ctx + [obj["response"]]
        else:
            turns = None
        if turns is None:
            bad += 1
            continue
        dialogues.append([normalize(t) for t in turns])
        pair_records.append(is_pair)
    if bad:
        warn(f"{path}: skipped {bad} malformed line(s)")
    if not dialogues:
        raise DataError(f"{path}: no valid JSONL line (expected {{\"dialogue\": [..]}} or "
                        "{\"context\": .., \"response\": ..})")
    return Corpus(dialogues, skipped={"bad_lines": bad}, **_fingerprint(path),
                  pair_records=pair_records if any(pair_records) else None)


def read_tsv(path: Path) -> Corpus:
    """context<TAB>response per line; each line is a two-utterance dialogue."""
    text = read_text(path)
    dialogues, bad = [], 0
    for line in _lines(text):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            bad += 1
            continue
        dialogues.append([normalize(parts[0]), normalize(parts[1])])
    if bad:
        warn(f"{path}: skipped {bad} line(s) without exactly one TAB")
    if not dialogues:
        raise DataError(f"{path}: no valid line (expected context<TAB>response)")
    return Corpus(dialogues, skipped={"bad_lines": bad}, **_fingerprint(path))


def _user_path(path: str) -> Path:
    """data.path with ~ expanded; an unknown ~user is one line, not a traceback."""
    try:
        return Path(path).expanduser()
    except RuntimeError as e:  # no home directory for that user
        raise DataError(f"data.path={path}: {e}") from None


def read_corpus(cfg: DataConfig) -> Corpus:
    if cfg.corpus == "chitchat":
        return read_chitchat()
    if cfg.corpus == "dailydialog":
        if cfg.path is None:
            from seqgan.data.download import fetch_dailydialog

            return read_dailydialog(fetch_dailydialog(cfg))
        return read_dailydialog(_user_path(cfg.path))
    if cfg.path is None:
        raise DataError(f"data.corpus={cfg.corpus} needs data.path=FILE")
    path = _user_path(cfg.path)
    return read_jsonl(path) if cfg.corpus == "jsonl" else read_tsv(path)
