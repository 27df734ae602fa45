"""Exact-match entity metrics: agreement with seqeval on flat data, hand-computed numbers otherwise."""

from __future__ import annotations

import json

import pytest
from seqeval.metrics import f1_score, precision_score, recall_score

from nagner.data.example import Entity, Sentence
from nagner.evaluation import Counts, EntityMetrics, evaluate_entities, format_report, seqeval_scores

E = Entity
span = Entity.from_span

# Each flat case: words, gold IOB2 tags, predicted IOB2 tags (written by hand, independent of
# nagner.data.tags) and the same entities as Entity lists.
FLAT_CASES = {
    "exact": (
        ["John", "Smith", "runs"],
        ["B-PER", "I-PER", "O"],
        ["B-PER", "I-PER", "O"],
        [span("PER", 0, 2)],
        [span("PER", 0, 2)],
    ),
    "wrong type": (
        ["in", "Paris", "today"],
        ["O", "B-LOC", "O"],
        ["O", "B-ORG", "O"],
        [span("LOC", 1, 2)],
        [span("ORG", 1, 2)],
    ),
    "partial span": (
        ["Bank", "of", "England", "said"],
        ["B-ORG", "I-ORG", "I-ORG", "O"],
        ["O", "O", "B-ORG", "O"],
        [span("ORG", 0, 3)],
        [span("ORG", 2, 3)],
    ),
    "extra entity": (
        ["Ann", "met", "Bob"],
        ["B-PER", "O", "O"],
        ["B-PER", "O", "B-PER"],
        [span("PER", 0, 1)],
        [span("PER", 0, 1), span("PER", 2, 3)],
    ),
    "missed entity": (
        ["Ann", "met", "Bob"],
        ["B-PER", "O", "B-PER"],
        ["O", "O", "B-PER"],
        [span("PER", 0, 1), span("PER", 2, 3)],
        [span("PER", 2, 3)],
    ),
    "adjacent same type": (
        ["Ann", "Bob", "left"],
        ["B-PER", "B-PER", "O"],
        ["B-PER", "I-PER", "O"],
        [span("PER", 0, 1), span("PER", 1, 2)],
        [span("PER", 0, 2)],
    ),
    "no entities": (["it", "rains"], ["O", "O"], ["O", "O"], [], []),
    "empty sentence": ([], [], [], [], []),
}


def _seqeval_reference(names: list[str]) -> dict[str, float]:
    gold = [FLAT_CASES[n][1] for n in names]
    pred = [FLAT_CASES[n][2] for n in names]
    return {
        "precision": precision_score(gold, pred, zero_division=0),
        "recall": recall_score(gold, pred, zero_division=0),
        "f1": f1_score(gold, pred, zero_division=0),
    }


FLAT_SUBSETS = [[name] for name in FLAT_CASES if name not in ("no entities", "empty sentence")] + [
    list(FLAT_CASES),
    ["wrong type", "empty sentence", "extra entity"],
    ["exact", "no entities"],
]


@pytest.mark.parametrize("names", FLAT_SUBSETS, ids=lambda names: "+".join(names))
def test_micro_scores_equal_seqeval_on_flat_data(names):
    gold = [FLAT_CASES[n][3] for n in names]
    pred = [FLAT_CASES[n][4] for n in names]
    ours = evaluate_entities(gold, pred)
    reference = _seqeval_reference(names)
    assert ours.f1 == reference["f1"]
    assert ours.precision == reference["precision"]
    assert ours.recall == reference["recall"]


@pytest.mark.parametrize("names", FLAT_SUBSETS, ids=lambda names: "+".join(names))
def test_seqeval_scores_converts_entities_to_the_hand_written_tags(names):
    sentences = [Sentence(words=FLAT_CASES[n][0], entities=FLAT_CASES[n][3]) for n in names]
    pred = [FLAT_CASES[n][4] for n in names]
    assert seqeval_scores(sentences, pred) == _seqeval_reference(names)


def test_all_flat_cases_hand_numbers():
    names = list(FLAT_CASES)
    m = evaluate_entities([FLAT_CASES[n][3] for n in names], [FLAT_CASES[n][4] for n in names])
    # gold: PER(0,2) LOC ORG PER PER PER PER PER = 8; pred: 7; correct: exact, extra's Ann, missed's Bob
    assert m.micro == Counts(tp_pred=3, tp_gold=3, n_pred=7, n_gold=8)
    assert m.per_type["ORG"] == Counts(0, 0, 2, 1)
    assert m.per_kind["flat"] == m.micro
    assert m.per_kind["nested"] == Counts() == m.per_kind["discontinuous"]


def _nested_discontinuous_case() -> tuple[list[list[Entity]], list[list[Entity]]]:
    gold = [
        [E("ORG", (0, 1, 2)), E("LOC", (2,)), E("PER", (4,))],  # nested, nested, flat
        [E("ADR", (0, 2, 3)), E("ADR", (0, 1))],  # discontinuous, nested
    ]
    pred = [
        [E("ORG", (0, 1, 2)), E("PER", (4,)), E("PER", (5,))],  # all flat among the predictions
        # discontinuous (listed twice: counts once), nested (shares words with the first)
        [E("ADR", (0, 2, 3)), E("ADR", (2, 3)), E("ADR", (0, 2, 3), score=0.3)],
    ]
    return gold, pred


def test_nested_and_discontinuous_hand_computed():
    m = evaluate_entities(*_nested_discontinuous_case())
    assert m.micro == Counts(tp_pred=3, tp_gold=3, n_pred=5, n_gold=5)
    assert (m.precision, m.recall, m.f1) == pytest.approx((0.6, 0.6, 0.6))

    assert list(m.per_type) == ["ADR", "LOC", "ORG", "PER"]
    assert m.per_type["ADR"] == Counts(1, 1, 2, 2)
    assert m.per_type["LOC"] == Counts(0, 0, 0, 1)
    assert m.per_type["ORG"] == Counts(1, 1, 1, 1)
    assert m.per_type["PER"] == Counts(1, 1, 2, 1)
    assert (m.per_type["PER"].precision, m.per_type["PER"].recall) == (0.5, 1.0)
    assert m.per_type["PER"].f1 == pytest.approx(2 / 3)
    assert m.per_type["LOC"].f1 == 0.0

    # the ORG hit is flat among predictions but nested among gold
    assert m.per_kind["flat"] == Counts(tp_pred=2, tp_gold=1, n_pred=3, n_gold=1)
    assert m.per_kind["flat"].precision == pytest.approx(2 / 3)
    assert m.per_kind["flat"].recall == 1.0
    assert m.per_kind["flat"].f1 == pytest.approx(0.8)
    assert m.per_kind["nested"] == Counts(tp_pred=0, tp_gold=1, n_pred=1, n_gold=3)
    assert (m.per_kind["nested"].precision, m.per_kind["nested"].f1) == (0.0, 0.0)
    assert m.per_kind["nested"].recall == pytest.approx(1 / 3)
    assert m.per_kind["discontinuous"] == Counts(1, 1, 1, 1)


def test_discontinuous_entity_needs_every_fragment():
    gold = [[E("ADR", (0, 2, 3))]]
    m = evaluate_entities(gold, [[E("ADR", (0, 2))]])
    assert m.micro == Counts(0, 0, 1, 1)
    assert m.per_kind["discontinuous"] == Counts(0, 0, 1, 1)


def test_metrics_sum_like_one_evaluation():
    gold, pred = _nested_discontinuous_case()
    names = list(FLAT_CASES)
    gold += [FLAT_CASES[n][3] for n in names]
    pred += [FLAT_CASES[n][4] for n in names]
    whole = evaluate_entities(gold, pred)
    parts = evaluate_entities(gold[:3], pred[:3]) + evaluate_entities(gold[3:], pred[3:])
    assert parts == whole
    assert (
        sum((evaluate_entities([g], [p]) for g, p in zip(gold, pred, strict=True)), EntityMetrics()) == whole
    )


def test_to_dict_is_json_ready():
    m = evaluate_entities(*_nested_discontinuous_case())
    d = json.loads(json.dumps(m.to_dict()))
    assert d["micro"]["f1"] == pytest.approx(0.6)
    assert d["micro"]["n_gold"] == 5
    assert d["per_type"]["PER"]["tp_pred"] == 1
    assert set(d["per_kind"]) == {"flat", "nested", "discontinuous"}


def test_format_report_is_an_aligned_table():
    report = format_report(evaluate_entities(*_nested_discontinuous_case()))
    lines = report.splitlines()
    assert lines[0].split() == ["P", "R", "F1", "support"]
    assert len({len(line) for line in lines}) == 1
    rows = {line.split("  ")[0].strip(): line.split()[-4:] for line in lines[2:]}
    assert list(rows) == [
        "micro", "type ADR", "type LOC", "type ORG", "type PER",
        "kind flat", "kind nested", "kind discontinuous",
    ]  # fmt: skip
    assert rows["micro"] == ["60.00", "60.00", "60.00", "5"]
    assert rows["kind nested"] == ["0.00", "33.33", "0.00", "3"]


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 sentences"):
        evaluate_entities([[], []], [[]])
    with pytest.raises(ValueError, match="sentences"):
        seqeval_scores([Sentence(words=["a"])], [])


@pytest.mark.parametrize(
    "gold, pred",
    [
        ([E("A", (0, 1)), E("B", (1,))], []),  # nested gold
        ([], [E("A", (0, 2))]),  # discontinuous prediction
        ([], [E("A", (0, 1)), E("A", (1, 2))]),  # overlapping predictions
    ],
)
def test_seqeval_scores_refuses_non_flat_input(gold, pred):
    with pytest.raises(ValueError, match="flat"):
        seqeval_scores([Sentence(words=["a", "b", "c"], entities=gold)], [pred])
