"""Entity ⇄ pointer sequence, and the grammar-constrained greedy pointer decoding."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from pointer_decoding import constrained_pointer_decode

from nagner.data.example import Entity
from nagner.modeling.targets import (
    END,
    IGNORE,
    PointerGrammar,
    entity_to_pointers,
    pointers_needed,
    pointers_to_indices,
)


def all_entities(n_words: int, max_fragments: int):
    """Every entity (as word-index tuples) inside ``n_words`` words with 1..max_fragments fragments."""
    for size in range(1, n_words + 1):
        for indices in itertools.combinations(range(n_words), size):
            entity = Entity("X", indices)
            if len(entity.fragments) <= max_fragments:
                yield entity


def test_pointers_of_a_contiguous_and_a_discontinuous_entity():
    # one pointer + END whatever the length; class j + 1 is word j
    assert entity_to_pointers(Entity("X", (3, 4, 5, 6)), 4) == [7, END, IGNORE, IGNORE]
    assert entity_to_pointers(Entity("X", (2,)), 2) == [3, END]
    # fragments [1, 3) and [5, 6) and [8, 10): end 2, start 5, end 5, start 8, end 9, END
    assert entity_to_pointers(Entity("X", (1, 2, 5, 8, 9)), 8) == [3, 6, 6, 9, 10, END, IGNORE, IGNORE]


def test_round_trip_is_exhaustive_for_up_to_four_fragments():
    seen = 0
    for entity in all_entities(9, 4):
        classes = entity_to_pointers(entity, 8)
        assert len(classes) == 8
        assert classes.count(END) == 1 and classes.index(END) == pointers_needed(entity) - 1
        assert classes[pointers_needed(entity) :] == [IGNORE] * (8 - pointers_needed(entity))
        assert pointers_to_indices(entity.start, classes) == entity.indices
        seen += 1
    assert seen == 2**9 - 2  # every non-empty subset of 9 words but 0, 2, 4, 6, 8 (5 fragments)


def test_round_trip_on_random_long_entities():
    rng = random.Random(7)
    for _ in range(500):
        n = rng.randint(1, 60)
        indices = tuple(sorted(rng.sample(range(200), n)))
        entity = Entity("X", indices)
        L = pointers_needed(entity) + rng.randint(0, 3)
        assert pointers_to_indices(entity.start, entity_to_pointers(entity, L)) == indices


@pytest.mark.parametrize("fragments", [1, 2, 3, 4, 5])
def test_pointers_needed_is_two_per_fragment(fragments):
    entity = Entity("X", tuple(range(0, 2 * fragments, 2)))  # 0, 2, 4, ...: one word per fragment
    assert len(entity.fragments) == fragments
    assert pointers_needed(entity) == 2 * fragments


def test_too_many_fragments_raises():
    entity = Entity("X", (0, 2, 4, 6, 8))  # 5 fragments need 10 pointers
    with pytest.raises(ValueError, match="needs 10 pointers, max_pointers is 8"):
        entity_to_pointers(entity, 8)
    assert entity_to_pointers(entity, 10)[-1] == END


def test_pointers_to_indices_cuts_at_end_and_closes_an_open_fragment():
    assert pointers_to_indices(2, [4, END, 7, 9]) == (2, 3)  # everything after END is ignored
    assert pointers_to_indices(2, [END]) == (2,)  # END at once: the start word alone
    assert pointers_to_indices(2, [3, 6]) == (2, 5)  # a fragment start (word 5) without its end: one word


# --------------------------------------------------------------------------- PointerGrammar


def check_valid(start: int, n_words: int, classes: list[int], L: int) -> None:
    """Decoded classes satisfy the entity grammar (see PointerGrammar)."""
    words = []
    for t, c in enumerate(classes):
        if c == END:
            assert t % 2 == 1, f"END at even position {t}: {classes}"
            assert all(x == END for x in classes[t:]), f"slot did not stay ended: {classes}"
            break
        words.append(c - 1)
    else:
        assert L % 2 == 1, f"an even-length slot must end with END: {classes}"
    bounds = [start, *words]
    assert all(0 <= b < n_words for b in bounds), (start, n_words, classes)
    for k in range(1, len(bounds)):
        if k % 2 == 1:  # fragment end >= fragment start
            assert bounds[k] >= bounds[k - 1], classes
        else:  # next fragment start leaves a gap after the previous end
            assert bounds[k] >= bounds[k - 1] + 2, classes
    indices = pointers_to_indices(start, classes)
    assert indices[0] == start and all(b > a for a, b in zip(indices, indices[1:]))
    assert indices[-1] < n_words
    entity = Entity("X", indices)
    assert len(entity.fragments) == (len(bounds) + 1) // 2  # fragments are separated by gaps


def allowed_log_softmax(logits: torch.Tensor, start: int, n_words: int, classes: list[int]) -> float:
    """Reference for one slot: each choice is the argmax over the classes the grammar allows (mask
    computed from scratch), and scores its probability under the model's whole distribution."""
    L, C = logits.shape
    total = 0.0
    fragment_start = previous_end = start
    for t in range(L):
        if t > 0 and classes[t - 1] == END:
            break
        allowed = torch.zeros(C, dtype=torch.bool)
        for c in range(1, n_words + 1):
            word = c - 1
            if t % 2 == 0:
                allowed[c] = word >= fragment_start
            elif t < L - 1:
                allowed[c] = word >= previous_end + 2
        allowed[END] = t % 2 == 1
        choice = classes[t]
        assert allowed[choice], (t, choice, classes)
        values = logits[t].masked_fill(~allowed, float("-inf")).log_softmax(-1)
        assert choice == int(values.argmax())
        total += float(logits[t].log_softmax(-1)[choice])
        if choice != END:
            if t % 2 == 0:
                previous_end = choice - 1
            else:
                fragment_start = choice - 1
    return total


@pytest.mark.parametrize("L", [2, 3, 6, 8])
def test_random_logits_decode_to_valid_entities_with_exact_log_prob(L):
    torch.manual_seed(L)
    S, n_max = 64, 12
    n_words = torch.randint(1, n_max + 1, (S,))
    starts = (torch.rand(S) * n_words).long()
    logits = torch.randn(S, L, n_max + 1) * 3
    logits[:, :, 1:] += torch.linspace(0, 2, n_max)  # favour later words: longer entities
    for s in range(S):  # padded words are -inf, as the decoder gives them
        logits[s, :, int(n_words[s]) + 1 :] = float("-inf")
    classes, log_prob = constrained_pointer_decode(logits, starts, n_words)
    assert classes.shape == (S, L) and log_prob.shape == (S,)
    assert torch.isfinite(log_prob).all() and (log_prob <= 0).all()
    fragment_counts = set()
    for s in range(S):
        row = classes[s].tolist()
        check_valid(int(starts[s]), int(n_words[s]), row, L)
        expected = allowed_log_softmax(logits[s], int(starts[s]), int(n_words[s]), row)
        assert float(log_prob[s]) == pytest.approx(expected, abs=1e-5)
        fragment_counts.add(len(Entity("X", pointers_to_indices(int(starts[s]), row)).fragments))
    if L == 8:
        assert len(fragment_counts) >= 2  # the random logits really exercise discontinuous outputs


def test_step_by_step_equals_one_pass():
    torch.manual_seed(1)
    S, L, n = 16, 8, 10
    logits = torch.randn(S, L, n + 1)
    starts, n_words = torch.randint(0, n, (S,)), torch.full((S,), n)
    classes, log_prob = constrained_pointer_decode(logits, starts, n_words)
    grammar = PointerGrammar(starts, n_words, L)
    for t in range(L):
        assert torch.equal(grammar.step(logits[:, t]), classes[:, t])
    assert torch.equal(grammar.log_prob, log_prob)


def test_hand_built_logits_give_a_two_fragment_entity():
    # sentence of 8 words, anchor word 1; intended entity: words 1, 2 and 5, 6, 7
    n, L = 8, 8
    logits = torch.zeros(1, L, n + 1)
    logits[0, 0, 1 + 2] = 5.0  # end of fragment 1: word 2
    logits[0, 1, 1 + 3] = 9.0  # word 3 is forbidden (no gap after word 2): the grammar skips it
    logits[0, 1, 1 + 5] = 4.0  # start of fragment 2: word 5
    logits[0, 2, 1 + 0] = 9.0  # word 0 < fragment start: forbidden
    logits[0, 2, 1 + 7] = 3.0  # end of fragment 2: word 7
    logits[0, 3, END] = 2.0
    logits[0, 4:, 1 + 4] = 9.0  # after END nothing counts
    classes, log_prob = constrained_pointer_decode(logits, torch.tensor([1]), torch.tensor([n]))
    assert classes[0].tolist() == [3, 6, 8, END, END, END, END, END]
    assert pointers_to_indices(1, classes[0].tolist()) == (1, 2, 5, 6, 7)

    def lsm(t: int, pick: int) -> float:  # the model's probability of the choice, over all classes
        return float(logits[0, t].log_softmax(-1)[pick])

    expected = (
        lsm(0, 1 + 2)  # t=0: words 1..7 allowed, word 2 chosen
        + lsm(1, 1 + 5)  # t=1: END or words 4..7 allowed (not the likelier word 3); word 5 chosen
        + lsm(2, 1 + 7)  # t=2: words 5..7 allowed (not word 0); word 7 chosen
        + lsm(3, END)  # t=3: words >= 9 do not exist: END only
    )
    assert float(log_prob[0]) == pytest.approx(expected, abs=1e-6)


def test_last_odd_position_is_forced_to_end_and_ended_slots_stay_ended():
    n, L = 10, 4
    logits = torch.full((2, L, n + 1), -5.0)
    logits[:, :, END] = -9.0  # END is never the favourite
    logits[:, :, 1:] += torch.arange(n, dtype=torch.float)  # the last word is
    classes, log_prob = constrained_pointer_decode(logits, torch.tensor([0, 9]), torch.tensor([n, n]))
    # slot 0: end at word 9; t=1: no word >= 11 exists → END; END for the rest
    assert classes.tolist() == [[10, END, END, END], [10, END, END, END]]
    # t=1 had END as the only choice, but END was unlikely: the sequence pays for it
    expected = float(logits[0, 0].log_softmax(-1)[-1] + logits[0, 1].log_softmax(-1)[END])
    assert float(log_prob[0]) == pytest.approx(expected, abs=1e-5)
    assert float(log_prob[1]) == pytest.approx(expected, abs=1e-5)  # the same choices, forced or not

    # an entity that keeps going up to the forced END at t = L - 1
    logits = torch.zeros(1, L, n + 1)
    logits[0, 0, 1 + 1] = 5.0
    logits[0, 1, 1 + 4] = 5.0
    logits[0, 2, 1 + 4] = 5.0
    logits[0, 3, 1 + 8] = 50.0  # not allowed at the last odd position
    classes, _ = constrained_pointer_decode(logits, torch.tensor([0]), torch.tensor([n]))
    assert classes[0].tolist() == [2, 5, 5, END]
