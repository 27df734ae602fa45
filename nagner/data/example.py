"""The one representation every reader, writer, model and metric shares.

An entity is a type plus a sorted tuple of word indices. Gaps in the indices make it
discontinuous; two entities of one sentence sharing words make them nested / overlapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Entity:
    """A typed entity over word indices of its sentence.

    ``indices`` is sorted and unique. ``score`` (model confidence) does not take part in
    equality or hashing, so gold and predicted entities compare by (type, indices) only.
    """

    type: str
    indices: tuple[int, ...]
    score: float | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        indices = tuple(int(i) for i in self.indices)
        if not indices:
            raise ValueError("an entity needs at least one word index")
        if any(b <= a for a, b in zip(indices, indices[1:])):
            raise ValueError(f"entity indices must be strictly increasing, got {list(indices)}")
        if indices[0] < 0:
            raise ValueError(f"entity indices must be >= 0, got {list(indices)}")
        object.__setattr__(self, "indices", indices)

    @classmethod
    def from_span(cls, type: str, start: int, end: int, score: float | None = None) -> Entity:
        """A contiguous entity over words ``[start, end)``."""
        return cls(type, tuple(range(start, end)), score)

    @property
    def start(self) -> int:
        return self.indices[0]

    @property
    def fragments(self) -> list[tuple[int, int]]:
        """Maximal runs of consecutive words as ``[start, end)`` word ranges."""
        runs: list[tuple[int, int]] = []
        begin = prev = self.indices[0]
        for i in self.indices[1:]:
            if i != prev + 1:
                runs.append((begin, prev + 1))
                begin = i
            prev = i
        runs.append((begin, prev + 1))
        return runs

    @property
    def is_discontinuous(self) -> bool:
        return self.indices[-1] - self.indices[0] + 1 != len(self.indices)


@dataclass
class Sentence:
    """Words (with their character offsets into ``text`` when known) and their entities.

    ``source`` and ``line`` say where the sentence was read from, for error messages.
    ``sentence_spans`` are character ranges of the sentences when ``text`` holds several
    (a paragraph or document predicted sentence by sentence).
    """

    words: list[str]
    entities: list[Entity] = field(default_factory=list)
    text: str | None = None
    offsets: list[tuple[int, int]] | None = None
    source: str | None = None
    line: int | None = None
    sentence_spans: list[tuple[int, int]] | None = None

    def __post_init__(self) -> None:
        if self.offsets is not None and len(self.offsets) != len(self.words):
            raise ValueError("offsets and words differ in length")

    def char_spans(self, entity: Entity) -> list[tuple[int, int]]:
        """Character ``[start, end)`` spans of the entity's fragments in ``text``."""
        if self.offsets is None:
            raise ValueError("this sentence has no character offsets")
        return [(self.offsets[a][0], self.offsets[b - 1][1]) for a, b in entity.fragments]

    def entity_text(self, entity: Entity) -> str:
        """The entity's surface form; fragments of a discontinuous entity are joined with " … "."""
        if self.text is not None and self.offsets is not None:
            parts = [self.text[a:b] for a, b in self.char_spans(entity)]
        else:
            parts = [" ".join(self.words[a:b]) for a, b in entity.fragments]
        return " … ".join(parts)


def entity_kind(entity: Entity, others: list[Entity] | set[Entity]) -> str:
    """"discontinuous", "nested" (shares a word with another entity of the set) or "flat"."""
    if entity.is_discontinuous:
        return "discontinuous"
    words = set(entity.indices)
    for other in others:
        if other is not entity and other != entity and words.intersection(other.indices):
            return "nested"
    return "flat"
