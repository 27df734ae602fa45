"""Data: the shared sentence/entity representation, readers and writers."""

from nagner.data.example import Entity, Sentence, entity_kind

__all__ = ["Entity", "Sentence", "entity_kind"]
