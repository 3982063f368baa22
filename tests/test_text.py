"""Notebook 09's text and small GPT (course_utils.text): the corpus is split by position without
overlap and identified by its checksum; a missing standard library is refused saying what to
do; perplexity of a model that knows nothing is the vocabulary's size; the n-gram baselines
equal a hand count; the GPT never reads a later byte."""

import math

import pytest
import torch

from course_utils import text
from course_utils.text import (Perplexity, TextCorpus, TinyGPT, gpt_baseline, ngram_perplexity, perplexity,
                               perplexity_ratio, python_sources)


def tiny_corpus(data: bytes) -> TextCorpus:
    return TextCorpus(torch.tensor(list(data), dtype=torch.uint8), "test", "0" * 64, 1)


def test_the_splits_are_consecutive_and_cover_the_corpus():
    corpus = python_sources()
    parts = [corpus.split(name) for name in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == len(corpus.tokens)
    assert torch.equal(torch.cat(parts), corpus.tokens)
    assert corpus.files >= text.MIN_FILES and len(corpus.sha256) == 64


def test_a_python_without_its_library_sources_is_refused_saying_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(text.sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path)})
    with pytest.raises(FileNotFoundError, match="installed without its sources"):
        python_sources()


def test_windows_hold_consecutive_bytes_and_the_next_one():
    corpus = tiny_corpus(bytes(range(200)))
    windows = corpus.windows("train", 10)
    assert windows.shape == (17, 11) and windows[1, 0] == 10 and windows[0, -1] == 10


class Uniform(torch.nn.Module):
    context = 8

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, tokens):
        return torch.zeros(*tokens.shape, 256)


def test_a_model_that_knows_nothing_has_the_vocabularys_perplexity():
    corpus = tiny_corpus(bytes(range(256)) * 8)
    assert perplexity(Uniform(), corpus, "train").value == pytest.approx(256)


def test_ngram_baselines_equal_a_hand_count():
    corpus = tiny_corpus(b"ab" * 500)  # train: "abab...", the bigram always knows the next byte
    unigram = ngram_perplexity(corpus, 1, "test", context=8)
    p_a = (450 + 1) / (900 + 256)  # add-one: 450 of each letter in the 900 training bytes
    assert unigram.value == pytest.approx(1 / p_a, rel=1e-6)
    bigram = ngram_perplexity(corpus, 2, "test", context=8)
    assert bigram.value == pytest.approx((450 + 256) / (450 + 1), rel=1e-2)
    assert bigram.value < unigram.value


def test_the_gpt_never_reads_a_later_byte():
    torch.manual_seed(0)
    model = TinyGPT(layers=2, width=32, heads=4, context=16).eval()
    tokens = torch.randint(0, 256, (2, 16))
    changed = tokens.clone()
    changed[:, 10:] = torch.randint(0, 256, (2, 6))
    with torch.no_grad():
        assert torch.allclose(model(tokens)[:, :10], model(changed)[:, :10], atol=1e-5)
        assert not torch.allclose(model(tokens)[:, 10:], model(changed)[:, 10:], atol=1e-3)
    assert model.block_linears() == [f"blocks.{b}.{n}" for b in range(2) for n in ("attention.qkv", "attention.proj",
                                                                                    "mlp.0", "mlp.2")]


def test_a_short_training_lowers_the_loss():
    torch.manual_seed(0)
    model, corpus = TinyGPT(layers=1, width=32, heads=2, context=32), python_sources()
    losses = text.fit_language_model(model, corpus, steps=60, batch_size=16, progress=False)
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.5 and math.isfinite(losses[-1])


def test_a_perplexity_ratio_pairs_the_windows():
    def measured(losses):
        losses = torch.tensor(losses, dtype=torch.float64)
        return Perplexity(math.exp(losses.mean().item()), 0, 0, losses)

    hard_and_easy = [4.0, 1.0, 3.0, 0.5, 2.0]
    a, b = measured([loss + 0.1 for loss in hard_and_easy]), measured(hard_and_easy)
    ratio = perplexity_ratio(a, b)  # every window 0.1 nats worse: exp(0.1), no spread left once paired
    assert ratio.value == pytest.approx(math.exp(0.1)) and ratio.low == pytest.approx(ratio.value) and ratio.clear
    assert str(ratio) == "1.105x (1.105-1.105)"
    with pytest.raises(ValueError, match="same windows"):
        perplexity_ratio(a, measured(hard_and_easy[:4]))


def test_the_gpt_baseline_is_trained_once_then_loaded(tmp_path, monkeypatch):
    import dataclasses

    from course_utils.profiles import PROFILES

    monkeypatch.setenv("COURSE_DATA_HOME", str(tmp_path))
    profile = dataclasses.replace(PROFILES["smoke"], gpt_steps=2)
    corpus = python_sources()
    first = gpt_baseline(profile, corpus, progress=False)
    again = gpt_baseline(profile, corpus, progress=False)
    assert not first.loaded and again.loaded and len(again.losses) == 2
    assert all(torch.equal(p, q) for p, q in zip(first.model.state_dict().values(), again.model.state_dict().values()))
    assert list(tmp_path.glob("checkpoints/tinygpt-python-*.pt"))
