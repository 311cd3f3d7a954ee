import math
import random

import numpy as np
import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from seqgan.metrics.bleu import corpus_bleu, self_bleu, texygen_bleu, texygen_bleus, words
from seqgan.metrics.classifier import accuracy, fooling_rate, roc_auc
from seqgan.metrics.diversity import distinct_n, mean_length, repetition_rate


def random_corpus(rng: random.Random, n: int, vocab: int, lo: int = 0, hi: int = 12) -> list[list[int]]:
    return [[rng.randrange(vocab) for _ in range(rng.randint(lo, hi))] for _ in range(n)]


def nltk_texygen(hyps, refs, n):
    """Texygen's BLEU: NLTK's sentence_bleu of each hypothesis against all references, sum / len."""
    w = tuple(1.0 / n for _ in range(n))
    sf = SmoothingFunction().method1
    bleu = [sentence_bleu(refs, h, w, smoothing_function=sf) for h in hyps]
    return sum(bleu) / len(bleu)


@pytest.mark.parametrize("seed, vocab, n", [(0, 6, 4), (1, 10, 3), (2, 4, 2), (3, 30, 4), (4, 8, 5)])
def test_texygen_bleu_equals_nltk_average(seed, vocab, n):
    rng = random.Random(seed)
    refs = random_corpus(rng, 40, vocab, lo=1)
    hyps = random_corpus(rng, 25, vocab, lo=0)  # includes empty and shorter-than-n hypotheses
    assert texygen_bleu(hyps, refs, n) == nltk_texygen(hyps, refs, n)  # bit for bit, not approximately


def test_texygen_bleu_weights_multiply_as_nltk_does():
    # log p / 3 and log p * (1 / 3) differ in the last bit here: the weights are multiplied
    assert texygen_bleu([[1, 2, 0]], [[2, 1, 2]], 3) == sentence_bleu(
        [[2, 1, 2]], [1, 2, 0], (1 / 3, 1 / 3, 1 / 3), smoothing_function=SmoothingFunction().method1)
    rng = random.Random(11)
    for n in (3, 5):
        for _ in range(200):
            refs, hyp = random_corpus(rng, rng.randint(1, 4), 3, lo=1, hi=6), random_corpus(rng, 1, 3, hi=6)
            assert texygen_bleu(hyp, refs, n) == nltk_texygen(hyp, refs, n)


def test_self_bleu_excludes_only_the_hypothesis_itself():
    rng = random.Random(5)
    samples = random_corpus(rng, 20, 6, lo=2)
    samples.append(list(samples[0]))  # a duplicate: it stays a reference for samples[0]
    each = [nltk_texygen([s], samples[:i] + samples[i + 1 :], 3) for i, s in enumerate(samples)]
    assert self_bleu(samples, 3) == sum(each) / len(each)  # Texygen's SelfBleu, bit for bit
    # without exclusion every sample would find itself: BLEU 1
    assert nltk_texygen(samples, samples, 3) > self_bleu(samples, 3) + 0.1
    assert self_bleu([[1, 2, 3], [4, 5, 6]], 2) == 0.0
    assert math.isnan(self_bleu([[1, 2, 3]], 2))  # no other sample: undefined, not "perfectly diverse"


def test_texygen_bleus_of_words_equal_nltk_per_order():
    hyps = ["i'm fine, thanks!", "what about you?", "", "fine fine fine"]
    refs = ["i'm fine, thank you.", "how about you?", "thanks, fine."]
    h, r = [words(t) for t in hyps], [words(t) for t in refs]
    assert h[0] == ["i'm", "fine", ",", "thanks", "!"] and h[2] == []  # corpus BLEU's 13a split
    got = texygen_bleus(h, r, (2, 3, 4))
    for n in (2, 3, 4):
        assert got[f"texygen_bleu_{n}"] == nltk_texygen(h, r, n)


def test_corpus_bleu_hand_computed():
    hyps = ["the cat sat on the mat", "hello there"]
    refs = ["the cat sat on a mat", "hello there friend"]
    # clipped matches / hypothesis n-grams summed over the corpus: 1-grams 5/6 + 2/2,
    # 2-grams 3/5 + 1/1, 3-grams 2/4 + 0/0, 4-grams 1/3 + 0/0; lengths 8 vs 9: BP = exp(1 - 9/8)
    p = [7 / 8, 4 / 6, 2 / 4, 1 / 3]
    bp = math.exp(1 - 9 / 8)
    ours = corpus_bleu(hyps, refs)
    for n in range(1, 5):
        assert ours[f"bleu_{n}"] == pytest.approx(100 * bp * math.prod(p[:n]) ** (1 / n), abs=1e-9)
    # hypotheses and references swapped: the references are longer, so BP = 1 and the precisions change
    swapped = corpus_bleu(refs, hyps, max_order=1)
    assert swapped["bleu_1"] == pytest.approx(100 * 7 / 9, abs=1e-9)


def test_distinct_n_hand_computed():
    samples = [[1, 2, 1, 2], [1, 2, 3]]
    # unigrams: 1,2,1,2,1,2,3 -> 3 unique / 7; bigrams: 12,21,12,12,23 -> 3 unique / 5
    assert distinct_n(samples, 1) == pytest.approx(3 / 7)
    assert distinct_n(samples, 2) == pytest.approx(3 / 5)
    assert distinct_n([[1]], 2) == 0.0
    assert mean_length(samples) == 3.5
    assert repetition_rate(samples, 2) == 0.5  # the first repeats the bigram (1, 2)


def test_roc_auc_equals_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 200).astype(float)  # many ties
    labels = rng.integers(0, 2, 200)
    pos, neg = scores[labels == 1], scores[labels == 0]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert roc_auc(scores, labels) == pytest.approx(brute)
    assert roc_auc(np.array([1.0, 2.0]), np.array([0, 1])) == 1.0
    assert math.isnan(roc_auc(np.array([1.0]), np.array([1])))


def test_accuracy_and_fooling_rate():
    assert accuracy(np.array([1.0, -1.0]), np.array([-2.0, 3.0])) == 0.5
    assert math.isnan(accuracy(np.array([]), np.array([]))) and math.isnan(fooling_rate(np.array([])))
    assert fooling_rate(np.array([1.0, -1.0, 2.0, -3.0])) == 0.5


def test_two_sample_test_holds_out_whole_dialogues(tiny_run, monkeypatch):
    import torch

    from seqgan import evaluate
    from seqgan.config import from_dict
    from seqgan.data.dataset import PairDataset
    from seqgan.data.tokenizer import Tokenizer
    from seqgan.rundir import RunDir

    run = RunDir(tiny_run)
    cfg = from_dict(run.read_config())
    data = PairDataset.load(run.split_path("train"))
    idx = np.arange(len(data))
    halves = []
    real = evaluate.dtrain.build_examples

    def spy(d, i, fakes, share, rng, max_len):
        halves.append(set(d.dialogue_ids()[i].tolist()))
        return real(d, i, fakes, share, rng, max_len)

    monkeypatch.setattr(evaluate.dtrain, "build_examples", spy)
    fakes = [data.response(int(i))[::-1].copy() for i in idx]  # reversed responses as "generated"
    vocab = Tokenizer.load(run.spm_model).vocab_size
    acc, n = evaluate.two_sample_test(cfg, vocab, data, idx, fakes, torch.device("cpu"), epochs=1)
    fit, test = halves
    assert fit and test and not (fit & test)  # no dialogue on both sides
    assert fit | test == set(data.dialogue_ids().tolist())
    assert 0.0 <= acc <= 1.0
    held_out = int(np.isin(data.dialogue_ids()[idx], list(test)).sum())
    assert n == 2 * held_out  # each held-out pair's real response and its generated one
