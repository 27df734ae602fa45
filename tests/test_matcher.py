"""Set matching of gold entities to slots, and the set property of the NAG loss."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from nagner.data.example import Entity, Sentence
from nagner.modeling import NagNerCollator, NagNerModel, encode_sentences
from nagner.modeling.matcher import match_slots, slot_costs
from nagner.modeling.targets import END, IGNORE


def random_targets(rng: random.Random, count: int, L: int, C: int) -> list[list[int]]:
    """Pointer targets: 2..L valid classes ending with END, IGNORE padded."""
    targets = []
    for _ in range(count):
        k = rng.randrange(2, L + 1, 2)
        classes = [rng.randrange(1, C) for _ in range(k - 1)] + [END]
        targets.append(classes + [IGNORE] * (L - k))
    return targets


def test_slot_costs_by_hand():
    # 2 slots, L = 2 positions, C = 3 classes (END, word 0, word 1), 2 types + NONE
    pointer = torch.log(
        torch.tensor(
            [
                [[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]],
                [[0.2, 0.2, 0.6], [0.5, 0.25, 0.25]],
            ]
        )
    )
    types = torch.log(torch.tensor([[0.1, 0.6, 0.3], [0.2, 0.2, 0.6]]))
    gold_pointers = torch.tensor([[1, END], [2, IGNORE]])  # the second target ignores position 1
    gold_types = torch.tensor([1, 2])
    cost = slot_costs(pointer, types, gold_pointers, gold_types)
    expected = -torch.log(
        torch.tensor(
            [
                [0.7 * 0.6 * 0.6, 0.2 * 0.3],
                [0.2 * 0.5 * 0.2, 0.6 * 0.6],
            ]
        )
    )
    assert cost.shape == (2, 2)
    assert torch.allclose(cost, expected, atol=1e-6)


def brute_force(cost: torch.Tensor) -> float:
    """Minimum total cost of giving every column (gold) its own row (slot)."""
    m, c = cost.shape
    return min(
        sum(float(cost[r, g]) for g, r in enumerate(rows)) for rows in itertools.permutations(range(m), c)
    )


@pytest.mark.parametrize("seed", range(4))
def test_match_slots_is_the_minimum_cost_assignment(seed):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    L, C, T = 4, 7, 4
    for _ in range(25):
        slot_groups, gold_groups = [], []
        for sentence in range(2):
            for word in rng.sample(range(6), 3):
                slots = rng.randint(1, 4)
                golds = rng.randint(0, min(3, slots))
                slot_groups += [(sentence, word)] * slots
                gold_groups += [(sentence, word)] * golds
        order = list(range(len(slot_groups)))
        rng.shuffle(order)  # slots of a group need not be adjacent
        slot_groups = [slot_groups[i] for i in order]
        rng.shuffle(gold_groups)
        S, G = len(slot_groups), len(gold_groups)
        pointer = torch.randn(S, L, C).log_softmax(-1)
        types = torch.randn(S, T).log_softmax(-1)
        gold_pointers = torch.tensor(random_targets(rng, G, L, C), dtype=torch.long).reshape(G, L)
        gold_types = torch.randint(1, T, (G,))
        slot_index, gold_index = match_slots(
            pointer, types, slot_groups, gold_pointers, gold_types, gold_groups
        )
        assert slot_index.dtype == gold_index.dtype == torch.long
        assert sorted(gold_index.tolist()) == list(range(G))  # every gold exactly once
        assert len(set(slot_index.tolist())) == G  # no slot twice
        for s, g in zip(slot_index.tolist(), gold_index.tolist()):
            assert slot_groups[s] == gold_groups[g]
        full = slot_costs(pointer, types, gold_pointers, gold_types)  # (S, G)
        for group in set(gold_groups):
            slots = [s for s, grp in enumerate(slot_groups) if grp == group]
            golds = [g for g, grp in enumerate(gold_groups) if grp == group]
            chosen = sum(
                float(full[s, g]) for s, g in zip(slot_index.tolist(), gold_index.tolist()) if g in golds
            )
            assert chosen == pytest.approx(brute_force(full[slots][:, golds]), abs=1e-5)


def test_match_slots_refuses_a_group_with_too_few_slots():
    pointer = torch.zeros(1, 2, 3).log_softmax(-1)
    types = torch.zeros(1, 2).log_softmax(-1)
    with pytest.raises(ValueError, match=r"group \(0, 1\) has 2 gold entities but only 1 slots"):
        match_slots(
            pointer, types, [(0, 1)], torch.tensor([[1, 0], [2, 0]]), torch.tensor([1, 1]), [(0, 1)] * 2
        )


def test_match_slots_with_no_gold_entity():
    pointer = torch.zeros(2, 2, 3).log_softmax(-1)
    types = torch.zeros(2, 2).log_softmax(-1)
    slot_index, gold_index = match_slots(
        pointer, types, [(0, 0), (0, 1)], torch.zeros(0, 2).long(), torch.zeros(0).long(), []
    )
    assert slot_index.tolist() == gold_index.tolist() == []


# ------------------------------------------------------------------------- the set property

NESTED = [
    Sentence(
        "the university of paris and berlin".split(),
        [
            Entity("ORG", (1, 2, 3)),
            Entity("ORG", (1, 2, 5)),  # discontinuous, same start
            Entity("LOC", (1,)),  # a third entity at word 1
            Entity("LOC", (3,)),
            Entity("LOC", (5,)),
        ],
    ),
    Sentence(
        "london and berlin".split(), [Entity("LOC", (0,)), Entity("LOC", (0, 1, 2)), Entity("LOC", (2,))]
    ),
]


@pytest.fixture
def one_thread():
    """Tiny models run best on one thread; on a shared busy CPU more threads are many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def nag_loss(model: NagNerModel, batch: dict) -> torch.Tensor:
    return model(**batch).loss


def permute_entities(batch: dict, perms: list[list[int]]) -> dict:
    """The same batch with each row's gold entities in another order (entity dimension)."""
    permuted = dict(batch)
    for key in ("entity_starts", "entity_pointers", "entity_types"):
        permuted[key] = torch.stack([batch[key][b][perm] for b, perm in enumerate(perms)])
    return permuted


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("mode", ["nag", "ar"])
def test_loss_does_not_depend_on_the_order_of_entities_in_sentences(tiny_encoder, mode):
    model = NagNerModel.from_encoder(
            tiny_encoder, ["LOC", "ORG"], decode_mode=mode, negative_start_ratio=0.0
        ).eval()
    collate = NagNerCollator(0, model.config.max_pointers)
    rng = random.Random(0)
    losses = []
    for _ in range(4):
        sentences = [Sentence(s.words, rng.sample(s.entities, len(s.entities))) for s in NESTED]
        features, _ = encode_sentences(sentences, model.tokenizer, model.config, with_targets=True)
        with torch.no_grad():
            losses.append(float(nag_loss(model, collate(features))))
    assert max(losses) - min(losses) <= 1e-6


@pytest.mark.usefixtures("one_thread")
def test_nag_loss_is_a_set_loss(tiny_encoder):
    """Reordering the gold entities inside the batch tensors (so the group order changes) leaves the
    NAG loss unchanged; the AR ablation, which assigns slots in the given order, is not invariant."""
    torch.manual_seed(0)
    features = None
    results = {}
    for mode in ("nag", "ar"):
        torch.manual_seed(0)
        model = NagNerModel.from_encoder(
            tiny_encoder, ["LOC", "ORG"], decode_mode=mode, negative_start_ratio=0.0
        ).eval()
        features, _ = encode_sentences(NESTED, model.tokenizer, model.config, with_targets=True)
        batch = NagNerCollator(0, model.config.max_pointers)(features)
        assert batch["entity_starts"].tolist() == [[1, 3, 5, 1, 1], [0, 0, 2, -1, -1]]
        perms = [list(p) for p in itertools.permutations(range(5))]
        rng = random.Random(1)
        losses = []
        with torch.no_grad():
            base = float(nag_loss(model, batch))
            for perm in rng.sample(perms, 12):
                second = [2, 1, 0, 3, 4] if perm[0] % 2 else [1, 0, 2, 3, 4]
                losses.append(float(nag_loss(model, permute_entities(batch, [perm, second]))))
        results[mode] = (base, losses)
    base, losses = results["nag"]
    assert all(abs(loss - base) <= 1e-6 for loss in losses), (base, losses)
    base, losses = results["ar"]
    assert max(abs(loss - base) for loss in losses) > 1e-4  # the check above can fail
