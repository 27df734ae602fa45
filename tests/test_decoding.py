"""Pointer beam search, the distance prior's buckets, span masks and entity selection."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from pointer_decoding import constrained_pointer_decode

from nagner.modeling.decoder import distance_bucket
from nagner.modeling.decoding import beam_search, non_overlapping, select_entities
from nagner.modeling.span_typing import SpanClassifier, span_type_bias
from nagner.modeling.targets import END, pointer_word_mask, pointers_to_indices


def valid_sequences(start: int, n: int, L: int):
    """Every pointer sequence the grammar allows (END-padded to L), by brute force."""
    def extend(prefix, fragment_start, previous_end):
        t = len(prefix)
        if t == L:
            yield prefix
            return
        if prefix and prefix[-1] == END:
            yield from extend(prefix + [END], fragment_start, previous_end)
            return
        if t % 2 == 0:
            for w in range(fragment_start, n):
                yield from extend(prefix + [w + 1], fragment_start, w)
        else:
            yield from extend(prefix + [END], fragment_start, previous_end)
            if t < L - 1:
                for w in range(previous_end + 2, n):
                    yield from extend(prefix + [w + 1], w, previous_end)
    yield from extend([], start, start)


def sequence_log_prob(logits: torch.Tensor, start: int, n: int, classes: list[int]) -> float:
    """Summed log-probability of ``classes`` (as the decoders score it), checking the grammar allows it."""
    total, fragment_start, previous_end, ended = 0.0, start, start, False
    L = logits.shape[0]
    for t, c in enumerate(classes):
        if ended:
            continue
        allowed = [False] * logits.shape[1]
        for w in range(n):
            if t % 2 == 0:
                allowed[w + 1] = w >= fragment_start
            elif t < L - 1:
                allowed[w + 1] = w >= previous_end + 2
        if t % 2 == 1:
            allowed[END] = True
        assert allowed[c]
        total += float(logits[t].log_softmax(-1)[c])  # the model's own probability of the choice
        ended = c == END
        if not ended:
            if t % 2 == 0:
                previous_end = c - 1
            else:
                fragment_start = c - 1
    return total


@pytest.mark.parametrize("seed", range(5))
def test_beam_one_is_exactly_greedy(seed):
    torch.manual_seed(seed)
    S, L, n = 40, 6, 9
    logits = torch.randn(S, L, n + 1) * 3
    logits[:, :, n - 1 :] = float("-inf")  # padded words of shorter sentences stay impossible
    starts = torch.randint(0, n - 2, (S,))
    n_words = torch.full((S,), n - 2)
    greedy, greedy_lp = constrained_pointer_decode(logits, starts, n_words)
    beam, beam_lp = beam_search(logits, starts, n_words, beam_size=1)
    assert torch.equal(beam, greedy)
    assert torch.allclose(beam_lp, greedy_lp, atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_a_wide_beam_finds_the_best_sequence_the_grammar_allows(seed):
    """With a beam as wide as the search space, beam search returns the brute-force optimum."""
    torch.manual_seed(seed)
    n, L = 6, 4
    logits = torch.randn(8, L, n + 1) * 2
    starts = torch.tensor([0, 1, 2, 0, 3, 1, 0, 2])
    n_words = torch.full((8,), n)
    best, best_lp = beam_search(logits, starts, n_words, beam_size=64)
    for s in range(8):
        scored = [(sequence_log_prob(logits[s], int(starts[s]), n, seq), seq)
                  for seq in valid_sequences(int(starts[s]), n, L)]
        top_lp, top = max(scored)
        assert best[s].tolist() == top
        assert float(best_lp[s]) == pytest.approx(top_lp, abs=1e-4)


def test_beam_search_reads_a_discontinuous_entity_that_greedy_misses():
    """"back and shoulder pain" (start "back" = 0): greedy takes the likelier first end "pain" (3)
    and must stop; the joint best is back … pain: end 0, next fragment at 3, end 3, END."""
    n, L = 4, 4
    logits = torch.full((L, n + 1), -5.0)
    logits[0, 1], logits[0, 4] = 1.0, 1.2  # end of fragment 1: "back" (0) or "pain" (3)
    logits[1, 4], logits[1, END] = 3.0, 0.0  # a second fragment at "pain" is likely
    logits[2, 4] = 3.0
    logits[3, END] = 3.0
    greedy, _ = beam_search(logits[None], torch.tensor([0]), torch.tensor([n]), beam_size=1)
    beam, _ = beam_search(logits[None], torch.tensor([0]), torch.tensor([n]), beam_size=4)
    assert pointers_to_indices(0, greedy[0].tolist()) == (0, 1, 2, 3)
    assert pointers_to_indices(0, beam[0].tolist()) == (0, 3)


def test_end_bias_makes_a_second_fragment_more_or_less_likely():
    n, L = 5, 4
    logits = torch.zeros(1, L, n + 1)
    logits[0, 0, 1] = 5.0  # first fragment ends at the start word
    logits[0, 1, 4] = 1.0  # a second fragment at word 3 is slightly likelier than END (0)
    logits[0, 2, 4] = 5.0
    start, words = torch.tensor([0]), torch.tensor([n])
    assert pointers_to_indices(0, beam_search(logits, start, words)[0][0].tolist()) == (0, 3)
    assert pointers_to_indices(0, beam_search(logits, start, words, end_bias=2.0)[0][0].tolist()) == (0,)


def test_distance_buckets():
    distances = torch.tensor([-3, 0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 31, 32, 63, 64, 1000])
    assert distance_bucket(distances).tolist() == [0, 0, 1, 2, 3, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9]


def test_pointer_word_mask_agrees_with_pointers_to_indices():
    rng = random.Random(0)
    for _ in range(500):
        n, L = 10, rng.choice([2, 4, 6])
        start = rng.randrange(n)
        classes = [rng.choice([END, -100, *range(1, n + 1)]) for _ in range(L)]
        mask = pointer_word_mask(torch.tensor([start]), torch.tensor([classes]), n + 3)[0]
        expected = set(pointers_to_indices(start, [END if c < 0 else c for c in classes]))
        assert set(mask.nonzero()[:, 0].tolist()) == expected


def test_span_type_bias_is_the_mean_word_type_logit_over_the_span():
    word_types = torch.tensor([[[1.0, -1.0], [3.0, 0.0], [5.0, 2.0]]])  # (1, 3 words, 2 types)
    spans = torch.tensor([[True, False, True], [False, True, False]])
    bias = span_type_bias(word_types, torch.tensor([0, 0]), spans)
    assert bias.tolist() == [[0.0, 3.0, 0.5], [0.0, 3.0, 0.0]]


def test_the_span_classifier_reads_the_first_and_last_word_and_the_mean_of_the_span():
    """With an identity MLP, its input is [first; last; mean] of the span's word states, whichever
    sentence of the batch the span lies in and however many fragments it has."""
    torch.manual_seed(0)
    words = torch.randn(2, 5, 3)  # (B, n, d)
    classifier = SpanClassifier(3, num_types=9, dropout=0.0, inner_size=9)
    classifier.mlp = torch.nn.Identity()
    spans = torch.tensor([[False, True, False, True, True], [True, False, False, False, False]])
    features = classifier(words, torch.tensor([1, 0]), spans)  # (2, 9)
    w = words[1]
    assert torch.allclose(features[0], torch.cat([w[1], w[4], (w[1] + w[3] + w[4]) / 3]))
    assert torch.allclose(features[1], torch.cat([words[0, 0], words[0, 0], words[0, 0]]))


def test_with_gaps_the_span_classifier_also_reads_the_words_around_the_gap_and_the_skipped_words():
    """A span of fragments (0, 1) and (4,) in a 6-word sentence: the word before the gap is 1, the
    one after it 4, the skipped words 2 and 3. Three fragments (0), (2), (5): the gap runs from
    word 1 to word 4, so the words around it are 0 and 5 and every skipped word counts in the mean.
    A contiguous span gets zeros for all three."""
    torch.manual_seed(0)
    words = torch.randn(1, 6, 2)
    classifier = SpanClassifier(2, num_types=12, dropout=0.0, gaps=True, inner_size=12)
    classifier.mlp = torch.nn.Identity()
    spans = torch.tensor([[1, 1, 0, 0, 1, 0], [1, 0, 1, 0, 0, 1], [0, 1, 1, 1, 0, 0]], dtype=torch.bool)
    features = classifier(words, torch.zeros(3, dtype=torch.long), spans)  # (3, 12)
    w = words[0]
    assert torch.allclose(features[0], torch.cat([w[0], w[4], (w[0] + w[1] + w[4]) / 3, w[1], w[4], (w[2] + w[3]) / 2]))
    assert torch.allclose(features[1], torch.cat([w[0], w[5], (w[0] + w[2] + w[5]) / 3, w[0], w[5], (w[1] + w[3] + w[4]) / 3]))
    assert torch.allclose(features[2], torch.cat([w[1], w[3], (w[1] + w[2] + w[3]) / 3, torch.zeros(6)]))


def test_select_entities_keeps_each_span_once_with_its_best_type_and_drops_none():
    found = select_entities(
        slot_batch=[0, 0, 0, 0, 1], slot_word=[0, 0, 0, 2, 0], classes=[[2, END], [2, END], [2, END], [3, END], [1, END]],
        type_id=[1, 2, 1, 0, 2], score=[0.6, 0.7, 0.9, 0.99, 0.4], batch_size=2,
    )
    assert found == [[(1, (0, 1), 0.9)], [(2, (0,), 0.4)]]
    assert select_entities([0], [0], [[1, END]], [1], [0.4], 1, threshold=0.5) == [[]]


def test_flat_mode_keeps_the_best_entities_that_share_no_word():
    entities = [(1, (0, 1, 2), 0.5), (2, (2, 3), 0.8), (1, (0,), 0.6), (3, (4,), 0.1), (1, (3, 4), 0.2)]
    kept = non_overlapping(entities)
    assert sorted(kept) == [(1, (0,), 0.6), (2, (2, 3), 0.8), (3, (4,), 0.1)]
    for a, b in itertools.combinations(kept, 2):
        assert set(a[1]).isdisjoint(b[1])
    found = select_entities([0] * 5, [e[1][0] for e in entities],
                            [[e[1][-1] + 1, END] for e in entities], [e[0] for e in entities],
                            [e[2] for e in entities], 1, overlap="flat")
    assert found == [sorted(kept, key=lambda e: (e[1], e[0]))]
