"""Exact-match entity metrics (micro, per type, per kind) and seqeval scores for flat data.

An entity counts as correct only if a gold entity of its sentence has the same type and exactly
the same word indices, so a discontinuous entity needs every fragment right. Counts are kept
beside the ratios so metrics of several runs or shards can be summed with ``+``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from nagner.data.example import Entity, Sentence, entity_kind

KINDS = ("flat", "nested", "discontinuous")


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


@dataclass(frozen=True)
class Counts:
    """Entity counts of one row of a report.

    ``tp_pred`` counts correct predicted entities and ``tp_gold`` the gold entities that were
    found. They are equal for micro and per-type rows; per-kind rows may differ, because a
    correct prediction's kind is computed among the predictions and its gold twin's among gold.
    """

    tp_pred: int = 0
    tp_gold: int = 0
    n_pred: int = 0
    n_gold: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.tp_pred + other.tp_pred,
            self.tp_gold + other.tp_gold,
            self.n_pred + other.n_pred,
            self.n_gold + other.n_gold,
        )

    @property
    def precision(self) -> float:
        return _ratio(self.tp_pred, self.n_pred)

    @property
    def recall(self) -> float:
        return _ratio(self.tp_gold, self.n_gold)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_dict(self) -> dict[str, float | int]:
        """Ratios and the counts they come from."""
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "tp_pred": self.tp_pred,
            "tp_gold": self.tp_gold,
            "n_pred": self.n_pred,
            "n_gold": self.n_gold,
        }


def _add_rows(a: dict[str, Counts], b: dict[str, Counts]) -> dict[str, Counts]:
    return {key: a.get(key, Counts()) + b.get(key, Counts()) for key in sorted(a.keys() | b.keys())}


@dataclass(frozen=True)
class EntityMetrics:
    """Exact-match scores: ``micro`` over all entities, ``per_type`` and ``per_kind`` rows.

    ``per_kind`` always holds the three kinds ("flat", "nested", "discontinuous");
    ``per_type`` holds every type seen in gold or predictions, sorted.
    """

    micro: Counts = field(default_factory=Counts)
    per_type: dict[str, Counts] = field(default_factory=dict)
    per_kind: dict[str, Counts] = field(default_factory=lambda: {kind: Counts() for kind in KINDS})

    def __add__(self, other: EntityMetrics) -> EntityMetrics:
        per_kind = _add_rows(self.per_kind, other.per_kind)
        return EntityMetrics(
            micro=self.micro + other.micro,
            per_type=_add_rows(self.per_type, other.per_type),
            per_kind={kind: per_kind[kind] for kind in KINDS},
        )

    @property
    def precision(self) -> float:
        return self.micro.precision

    @property
    def recall(self) -> float:
        return self.micro.recall

    @property
    def f1(self) -> float:
        return self.micro.f1

    def to_dict(self) -> dict[str, dict]:
        """A JSON-ready nested dict of every row's ratios and counts."""
        return {
            "micro": self.micro.to_dict(),
            "per_type": {name: counts.to_dict() for name, counts in self.per_type.items()},
            "per_kind": {kind: counts.to_dict() for kind, counts in self.per_kind.items()},
        }


def evaluate_entities(
    gold: Sequence[Sequence[Entity]], predicted: Sequence[Sequence[Entity]]
) -> EntityMetrics:
    """Exact-match P/R/F1 of ``predicted`` against ``gold``, one entity list per sentence.

    Duplicates inside one sentence's list count once. Raises ``ValueError`` when the two
    sequences hold a different number of sentences.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"gold has {len(gold)} sentences but predicted has {len(predicted)}")
    micro = Counts()
    per_type: dict[str, Counts] = {}
    per_kind = {kind: Counts() for kind in KINDS}
    for gold_list, pred_list in zip(gold, predicted, strict=True):
        gold_set, pred_set = set(gold_list), set(pred_list)
        for entity in pred_set:
            hit = int(entity in gold_set)
            per_kind[entity_kind(entity, pred_set)] += Counts(tp_pred=hit, n_pred=1)
            # a hit is one true positive on both sides for type and micro rows
            row = Counts(tp_pred=hit, tp_gold=hit, n_pred=1)
            per_type[entity.type] = per_type.get(entity.type, Counts()) + row
            micro += row
        for entity in gold_set:
            hit = int(entity in pred_set)
            per_kind[entity_kind(entity, gold_set)] += Counts(tp_gold=hit, n_gold=1)
            per_type[entity.type] = per_type.get(entity.type, Counts()) + Counts(n_gold=1)
            micro += Counts(n_gold=1)
    return EntityMetrics(micro=micro, per_type=dict(sorted(per_type.items())), per_kind=per_kind)


def format_report(metrics: EntityMetrics) -> str:
    """An aligned text table: rows micro, each type, each kind; columns P, R, F1 (in %), support.

    Support is the number of gold entities of the row.
    """
    rows: list[tuple[str, Counts]] = [("micro", metrics.micro)]
    rows += [(f"type {name}", counts) for name, counts in metrics.per_type.items()]
    rows += [(f"kind {kind}", counts) for kind, counts in metrics.per_kind.items()]
    width = max(len(name) for name, _ in rows)
    header = f"{'':<{width}}  {'P':>6}  {'R':>6}  {'F1':>6}  {'support':>7}"
    lines = [header, "-" * len(header)]
    for name, c in rows:
        lines.append(
            f"{name:<{width}}  {100 * c.precision:6.2f}  {100 * c.recall:6.2f}  {100 * c.f1:6.2f}  {c.n_gold:>7}"
        )
    return "\n".join(lines)


def _flat_spans(entities: Sequence[Entity], n_words: int, what: str) -> list[tuple[str, int, int]]:
    """``(type, start, end)`` spans of a flat entity list; ``ValueError`` if it is not flat."""
    unique = set(entities)
    spans = []
    for entity in sorted(unique):
        kind = entity_kind(entity, unique)
        if kind != "flat":
            raise ValueError(f"seqeval needs flat entities, but {what} has a {kind} entity {entity}")
        if entity.indices[-1] >= n_words:
            raise ValueError(f"{what} has entity {entity} beyond its {n_words} words")
        spans.append((entity.type, entity.indices[0], entity.indices[-1] + 1))
    return spans


def seqeval_scores(
    gold_sentences: Sequence[Sentence], predicted: Sequence[Sequence[Entity]]
) -> dict[str, float]:
    """seqeval's precision, recall and F1 (default mode) on IOB2 tags, for comparison with papers.

    Only flat data is accepted: a nested or discontinuous entity on either side raises
    ``ValueError``, as does a different number of sentences.
    """
    from seqeval.metrics import f1_score, precision_score, recall_score

    from nagner.data.tags import spans_to_tags

    if len(gold_sentences) != len(predicted):
        raise ValueError(f"gold has {len(gold_sentences)} sentences but predicted has {len(predicted)}")
    gold_tags, pred_tags = [], []
    for i, (sentence, pred_list) in enumerate(zip(gold_sentences, predicted, strict=True)):
        n = len(sentence.words)
        gold_tags.append(spans_to_tags(_flat_spans(sentence.entities, n, f"gold sentence {i}"), n))
        pred_tags.append(spans_to_tags(_flat_spans(pred_list, n, f"prediction {i}"), n))
    return {
        "precision": float(precision_score(gold_tags, pred_tags, zero_division=0)),
        "recall": float(recall_score(gold_tags, pred_tags, zero_division=0)),
        "f1": float(f1_score(gold_tags, pred_tags, zero_division=0)),
    }
