"""Sliding windows over long sentences: coverage, budget, overlap, and no entity lost at prediction."""

from __future__ import annotations

import random

import pytest

from nagner.data.example import Entity, Sentence
from nagner.modeling import NagNerModel
from nagner.modeling import inference as modeling_module
from nagner.modeling.encoding import word_subwords
from nagner.modeling.windows import inside_window, plan_windows


def safe_span(counts: list[int], budget: int) -> int:
    """Longest entity span (last - first + 1 words) that lies inside some window, whatever its place.

    A window that is not the last holds at least ``w = budget // max(counts)`` words (it stops
    only when the next word does not fit). The next window starts half its length later, so an
    entity starting at ``a`` sits in the last window starting before ``a`` at most ``ceil(w / 2)``
    words from its start, and must end before the window's last word: span <= ceil(w / 2) - 1.
    """
    w = budget // max(counts)
    return (w + 1) // 2 - 1


def test_plan_windows_small_cases():
    assert plan_windows([], 5) == [(0, 0)]
    assert plan_windows([1, 2, 2], 5) == [(0, 3)]
    assert plan_windows([1] * 8, 4) == [(0, 4), (2, 6), (4, 8)]
    assert plan_windows([1, 1, 9, 1], 4) == [(0, 2), (1, 2), (2, 3), (3, 4)]  # word 2 alone exceeds
    with pytest.raises(ValueError, match="budget must be >= 1"):
        plan_windows([1], 0)


@pytest.mark.parametrize("seed", range(6))
def test_windows_cover_fit_and_overlap(seed):
    rng = random.Random(seed)
    for _ in range(50):
        counts = [rng.randint(1, 4) for _ in range(rng.randint(1, 80))]
        budget = rng.randint(4, 30)
        windows = plan_windows(counts, budget)
        n = len(counts)
        assert windows[0][0] == 0 and windows[-1][1] == n
        covered = set()
        for (s, e), following in zip(windows, windows[1:] + [None]):
            assert 0 <= s < e <= n
            assert sum(counts[s:e]) <= budget or e - s == 1
            covered.update(range(s, e))
            if following is not None:
                assert following[0] > s  # progress
                if e - s >= 2:
                    assert following[0] < e  # overlap
                    assert following[0] - s == (e - s) // 2  # by about half
                else:
                    assert following[0] == e
        assert covered == set(range(n))


def test_a_word_longer_than_the_budget_gets_a_window_of_its_own():
    windows = plan_windows([2, 12, 2, 2], 6)
    assert (1, 2) in windows
    assert all(s == 1 and e == 2 for s, e in windows if s <= 1 < e)


@pytest.mark.parametrize("seed", range(5))
def test_no_entity_up_to_the_safe_span_is_lost(seed):
    rng = random.Random(100 + seed)
    checked = 0
    for _ in range(40):
        counts = [rng.randint(1, 3) for _ in range(rng.randint(20, 120))]
        budget = rng.randint(9, 24)
        n = len(counts)
        windows = plan_windows(counts, budget)
        bound = safe_span(counts, budget)
        assert bound >= 1
        for a in range(n):  # every start, every span up to the bound, with and without a gap
            for span in range(1, bound + 1):
                z = a + span - 1
                if z >= n:
                    break
                shapes = [tuple(range(a, z + 1))]
                if span >= 3:
                    shapes.append((a, z))
                for indices in shapes:
                    assert any(inside_window(indices, w, n) for w in windows), (counts, budget, indices)
                    checked += 1
    assert checked > 1000


def test_inside_window_respects_cut_edges_only():
    assert inside_window((0, 1), (0, 5), 10)  # the sentence start is no cut
    assert not inside_window((5, 6), (5, 9), 10)  # touches the cut left edge
    assert not inside_window((7, 8), (5, 9), 10)  # touches the cut right edge
    assert inside_window((8, 9), (5, 10), 10)  # the sentence end is no cut
    assert inside_window((6, 7), (5, 9), 10)
    assert not inside_window((4, 6), (5, 9), 10)  # crosses


# ------------------------------------------------------------------ model-level oracle test

WORDS_1 = "the of in and to a is was at on for with by from university paris berlin london".split()
WORDS_2 = ["ab", "xy", "q7", "zz"]  # two sub-tokens each


def oracle_sentence(
    rng: random.Random, n: int, words: list[str], max_span: int, types: list[str]
) -> Sentence:
    """A random sentence with flat, nested and discontinuous entities of span <= ``max_span``."""
    entities = set()
    while len(entities) < n // 3:
        a = rng.randrange(n)
        span = rng.randint(1, max_span)
        z = min(n - 1, a + span - 1)
        indices = tuple(range(a, z + 1))
        if len(indices) >= 3 and rng.random() < 0.4:
            indices = (a, *indices[2:])  # drop the second word: discontinuous
        entities.add(Entity(rng.choice(types), indices))
    return Sentence([rng.choice(words) for _ in range(n)], sorted(entities))


def test_predict_sentences_reassembles_every_entity_exactly_once(tiny_encoder, monkeypatch):
    """An oracle decoder returns, per window, the gold entities in it (and truncated views of the
    ones crossing its edges); `predict_sentences` must give back exactly the gold set."""
    types = ["LOC", "ORG", "PER"]
    model = NagNerModel.from_encoder(tiny_encoder, types, max_subwords=12)
    tokenizer = model.tokenizer
    assert [len(ids) for ids in word_subwords(tokenizer, WORDS_1 + WORDS_2, 16)] == [1] * 18 + [2] * 4
    budget = model.config.max_subwords - 2
    rng = random.Random(3)
    one = oracle_sentence(rng, 50, WORDS_1, safe_span([1], budget), types)  # bound 4
    two = oracle_sentence(rng, 40, WORDS_1 + WORDS_2, safe_span([1, 2], budget), types)  # bound 2
    short = Sentence(
        ["paris", "and", "berlin"], [Entity("LOC", (0,)), Entity("LOC", (0, 2)), Entity("ORG", (0, 1, 2))]
    )
    empty = Sentence([])
    sentences = [one, empty, two, short]
    assert any(e.is_discontinuous for e in one.entities)
    assert any(len(w) > 1 for w in (set(two.words) & set(WORDS_2)))

    recorded: list[dict] = []
    encode = modeling_module.encode_sentences

    def recording_encode(*args, **kwargs):
        features, report = encode(*args, **kwargs)
        recorded.append(features)  # the list predict_sentences sorts and batches
        return features, report

    rows: list[dict] = []
    truncated_views = 0

    def oracle_decode(self, words, word_mask, detection, threshold=None, **decoding):
        nonlocal truncated_views
        if not rows:
            rows.extend(f for f in recorded[-1] if f["word_first"])
        batch, rows[:] = rows[: words.shape[0]], rows[words.shape[0] :]
        results = []
        for feature in batch:
            assert int(word_mask[len(results)].sum()) == len(feature["word_first"])
            sentence = sentences[feature["sentence_index"]]
            begin = feature["word_offset"]
            end = begin + len(feature["word_first"])
            found = []
            for entity in sentence.entities:
                view = tuple(i - begin for i in entity.indices if begin <= i < end)
                whole = len(view) == len(entity.indices)
                if view and (whole or not entity.is_discontinuous):
                    truncated_views += not whole
                    found.append((types.index(entity.type) + 1, view, 0.5 if whole else 0.9))
            results.append(found)
        return results

    monkeypatch.setattr(modeling_module, "encode_sentences", recording_encode)
    monkeypatch.setattr(NagNerModel, "decode", oracle_decode)
    predicted = model.predict_sentences(sentences, batch_size=4)

    n_windows = len(recorded[0])
    assert n_windows > 15  # many windows, several batches
    assert truncated_views > 0  # the oracle really offered truncated entities at cut edges
    assert not rows  # every window row was decoded
    for sentence, entities in zip(sentences, predicted):
        assert len(entities) == len(set(entities))  # no duplicate
        assert sorted(entities) == sorted(sentence.entities)  # none lost, none invented
        assert all(e.score == 0.5 for e in entities)


def test_predict_sentences_keeps_the_best_score_of_a_duplicate(tiny_encoder, monkeypatch):
    """The same entity from two overlapping windows is one entity with the higher score."""
    model = NagNerModel.from_encoder(tiny_encoder, ["LOC"], max_subwords=10)  # budget 8 one-piece words
    sentence = Sentence(["paris"] * 16)
    assert plan_windows([1] * 16, 8) == [(0, 8), (4, 12), (8, 16)]
    scores = [0.3, 0.7, None]

    def decode(self, words, word_mask, detection, threshold=None, **decoding):
        # equal lengths: the stable sort keeps the planned window order, row r starts at word 4 r
        assert words.shape[0] == 3
        return [[(1, (5 - 4 * r, 6 - 4 * r), scores[r])] if scores[r] else [] for r in range(3)]

    monkeypatch.setattr(NagNerModel, "decode", decode)
    (entities,) = model.predict_sentences([sentence])
    assert entities == [Entity("LOC", (5, 6))]  # strictly inside windows (0, 8) and (4, 12)
    assert entities[0].score == 0.7
