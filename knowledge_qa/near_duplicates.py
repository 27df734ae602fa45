"""Near-duplicate questions between training sources and held-out questions.

An exact string match misses paraphrases: StrategyQA's extra training questions hold rewordings of
dev questions ("Would Avengers Comics/merch be out of place in a DC Comics store?") with the same
answer, and a model that memorises them scores on dev without answering anything.

Measure: Jaccard similarity of the two questions' word sets (lowercased alphanumeric words, every word
kept: in a question of ten words the function words are part of what makes two questions the same).
A training question is a near-duplicate when its similarity to some held-out question reaches the
threshold. Default 0.5, chosen on StrategyQA (extra training questions + train against dev; run
`find_near_duplicates` at several thresholds to see it): the pairs at ≥ 0.5 share their answer 42
times in 47 (mostly rewordings: "Was the Land of Israel under the control of a muslim empire in 16th
century?" / "Was Land of Israel in possession of an Islamic empire in 16th century?" is 0.5), while
in the 0.30–0.35 band the answers agree about as often as chance (103 of 198) and the pairs are one
template about different things ("Can a woman get prostate cancer?" / "Can amoebas get cancer?").
Removing everything at ≥ 0.5 costs 47 of 4,882 training questions.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from knowledge_qa.errors import QAInputError

DEFAULT_THRESHOLD = 0.5
_WORD = re.compile(r"[a-z0-9]+")

T = TypeVar("T")


def check_threshold(threshold: float) -> None:
    """QAInputError (a ValueError) unless 0 < ``threshold`` <= 1."""
    if not 0.0 < threshold <= 1.0:
        raise QAInputError(f"the near-duplicate threshold must be in (0, 1], got {threshold}")


def word_set(text: str) -> frozenset[str]:
    """The lowercased alphanumeric words of ``text``."""
    return frozenset(_WORD.findall(text.lower()))


def jaccard(first: frozenset[str], second: frozenset[str]) -> float:
    """|A ∩ B| / |A ∪ B|; two empty sets count as different (0.0)."""
    union = len(first | second)
    return len(first & second) / union if union else 0.0


@dataclass(frozen=True)
class NearDuplicate:
    """Training text ``index`` is ``similarity``-similar to held-out text ``held_out_index`` (its most
    similar one; ties: the first)."""

    index: int
    held_out_index: int
    similarity: float


def find_near_duplicates(
    texts: Sequence[str], held_out: Sequence[str], threshold: float = DEFAULT_THRESHOLD
) -> list[NearDuplicate]:
    """Every text of ``texts`` whose best Jaccard similarity to ``held_out`` is ≥ ``threshold``, in
    order. Only held-out texts sharing a word are compared (an inverted index), so thousands × thousands
    takes well under a second."""
    check_threshold(threshold)
    held_words = [word_set(text) for text in held_out]
    postings: dict[str, list[int]] = defaultdict(list)
    for position, words in enumerate(held_words):
        for word in words:
            postings[word].append(position)
    found = []
    for index, text in enumerate(texts):
        words = word_set(text)
        shared: dict[int, int] = defaultdict(int)
        for word in words:
            for position in postings.get(word, ()):
                shared[position] += 1
        best, best_similarity = -1, 0.0
        for position in sorted(shared):
            similarity = shared[position] / (len(words) + len(held_words[position]) - shared[position])
            if similarity > best_similarity:
                best, best_similarity = position, similarity
        if best >= 0 and best_similarity >= threshold:
            found.append(NearDuplicate(index, best, best_similarity))
    return found


def drop_near_duplicates(
    items: Sequence[T], texts: Sequence[str], held_out: Sequence[str], threshold: float = DEFAULT_THRESHOLD
) -> tuple[list[T], list[NearDuplicate]]:
    """(``items`` without those whose text is a near-duplicate of a held-out text, the dropped ones)."""
    if len(items) != len(texts):
        raise ValueError(f"{len(items)} items but {len(texts)} texts")
    dropped = find_near_duplicates(texts, held_out, threshold)
    gone = {duplicate.index for duplicate in dropped}
    return [item for index, item in enumerate(items) if index not in gone], dropped
