import pytest

from seqgan.config import DataConfig
from seqgan.data.corpora import Corpus
from seqgan.data.pairs import build_splits, make_pairs, split_dialogues
from seqgan.errors import DataError


def test_n_utterances_give_n_minus_1_pairs():
    cfg = DataConfig(context_turns=1)
    p = make_pairs([["a", "b", "c", "d"], ["x", "y"]], [0, 1], cfg)
    assert list(zip(p.contexts, p.responses, strict=False)) == [("a", "b"), ("b", "c"), ("c", "d"), ("x", "y")]
    assert p.dialogue_ids == [0, 0, 0, 1]


def test_context_turns_joins_previous_utterances():
    cfg = DataConfig(context_turns=2, context_separator=" <sep> ")
    p = make_pairs([["a", "b", "c", "d"]], [0], cfg)
    assert p.contexts == ["a", "a <sep> b", "b <sep> c"]
    assert p.responses == ["b", "c", "d"]


def test_splits_are_by_dialogue_and_seeded():
    dialogs = [[f"d{i} u{j}" for j in range(4)] for i in range(100)]
    cfg = DataConfig(split=[0.8, 0.1, 0.1])
    splits, _, used = build_splits(Corpus(dialogs), cfg, seed=3)
    ids = {s: set(p.dialogue_ids) for s, p in splits.items()}
    assert not (ids["train"] & ids["valid"]) and not (ids["train"] & ids["test"]) and not (ids["valid"] & ids["test"])
    assert (len(ids["train"]), len(ids["valid"]), len(ids["test"])) == (80, 10, 10) and used == 100
    for _s, p in splits.items():  # every pair's text comes from its own dialogue
        for c, r, d in zip(p.contexts, p.responses, p.dialogue_ids, strict=False):
            assert c.startswith(f"d{d} ") and r.startswith(f"d{d} ")
    again, _, _ = build_splits(Corpus(dialogs), cfg, seed=3)
    assert again["test"].contexts == splits["test"].contexts
    other, _, _ = build_splits(Corpus(dialogs), cfg, seed=4)
    assert other["test"].contexts != splits["test"].contexts


@pytest.mark.parametrize("n, split, sizes", [
    (7168, [0.9, 0.05, 0.05], (6451, 358, 359)),  # the chitchat corpus: as before
    (4, [0.9, 0.05, 0.05], (2, 1, 1)),  # rounding gave train all 4 and valid, test none
    (10, [0.95, 0.05, 0.0], (9, 1, 0)),  # round(9.5) = 10 left valid empty
    (24, [0.98, 0.01, 0.01], (22, 1, 1)),
])
def test_every_split_asked_for_keeps_a_dialogue(n, split, sizes):
    out = split_dialogues(Corpus([["a", "b"]] * n), DataConfig(split=split), 0)
    assert tuple(len(out[s]) for s in ("train", "valid", "test")) == sizes
    assert sorted(out["train"] + out["valid"] + out["test"]) == list(range(n))


def test_a_split_without_pairs_is_one_clear_error():
    dialogs = [["a", "b"], ["c", "d"], ["e", "f"], ["g"]]  # the one-utterance dialogue gives no pair
    # seed 0 splits them train [0, 2], valid [1], test [3]
    with pytest.raises(DataError, match=r"the test split has no \(context, response\) pair \(1 of 4 dialogues"):
        build_splits(Corpus(dialogs), DataConfig(), 0)
    assert build_splits(Corpus(dialogs), DataConfig(), 2)[0]["test"].contexts == ["c"]  # train [2, 3]: fine


def test_official_split_is_kept():
    dialogs = [["a", "b"], ["c", "d"], ["e", "f"]]
    splits, _, _ = build_splits(Corpus(dialogs, official_split=["test", "train", "valid"]), DataConfig(), 0)
    assert splits["train"].contexts == ["c"] and splits["valid"].contexts == ["e"] and splits["test"].contexts == ["a"]


def test_a_context_response_record_gives_one_pair_and_dialogues_without_pairs_are_counted():
    """A record's context turns are no responses: they gave pairs of their own, and those of a test
    record came back as training pairs of the records that continue its conversation."""
    records = [["a", "b", "c"], ["a", "b", "c", "d"], ["x", ""], ["", "y"], ["only"]]
    dialogs = records + [["m", "", "n"], ["p", "q", "r"], ["v1", "v2"], ["t1", "t2"]]
    corpus = Corpus(dialogs, official_split=["train"] * 7 + ["valid", "test"], pair_records=[True] * 5 + [False] * 4)
    splits, skipped, _ = build_splits(corpus, DataConfig(context_turns=2), 0)
    train = list(zip(splits["train"].contexts, splits["train"].responses, strict=True))
    assert train == [("a <sep> b", "c"), ("b <sep> c", "d"), ("p", "q"), ("p <sep> q", "r")]
    assert splits["train"].dialogue_ids == [0, 1, 6, 6]
    # an empty response, a lone response, a lone turn, a dialogue cut into single turns
    assert skipped["dialogues_without_pairs"] == 4 and skipped["empty_utterances"] == 3


def test_empty_and_overlong_utterances_are_counted_and_skipped():
    long = "x" * 200_000
    dialogs = [["a", "", "b", long, "c", "d"]] * 4
    splits, skipped, _ = build_splits(Corpus(dialogs), DataConfig(), 0)
    assert skipped["empty_utterances"] == 4 and skipped["long_utterances"] == 4
    # the dialogue is cut at the empty and the long utterance: no pair bridges either (the turns
    # on both sides are the same speaker's)
    assert sorted(set(zip(splits["train"].contexts, splits["train"].responses, strict=False))) == [("c", "d")]
