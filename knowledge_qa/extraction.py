"""RetrieveExtract's second half: turn the retrieved passages into one short fact for the open
sub-question.

* `GenerativeExtractor` — the paper's extractor: a text-to-text model writes the fact from the
  sub-question, AddDecomp's pseudo-answer hint and the passages (`prompts.extract_prompt`).
* `SentenceExtractor` — picks the passage sentence closest to the sub-question in sentence-embedding
  space (all-MiniLM-L6-v2 by default). It writes nothing new, so it needs no training and cannot
  produce noise; it is the extractor of the CPU benchmark, where a generator that can be trained in
  the time available writes poor facts. The hint is not used: a weak core model's guess would pull
  the choice toward its own mistakes.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from knowledge_qa.corpus import Passage
from knowledge_qa.models.base import TextModel
from knowledge_qa.prompts import FINE_TUNED, PromptSet, extract_input

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


@dataclass(frozen=True)
class ExtractionRequest:
    """One RetrieveExtract call: the sub-question (``#k`` resolved), the hint and the passages."""

    sub_question: str
    hint: str
    passages: Sequence[Passage]


class Extractor(ABC):
    """Writes one fact per request ("" when it has nothing; the agent then falls back)."""

    @abstractmethod
    def extract(self, requests: Sequence[ExtractionRequest]) -> list[str]:
        """One fact per request, batched."""

    def describe(self) -> str:
        return type(self).__name__


class GenerativeExtractor(Extractor):
    """A `TextModel` writing the fact (greedy, at most ``max_new_tokens``), asked with the
    "extract" template of ``prompts``."""

    def __init__(self, model: TextModel, max_new_tokens: int = 32, prompts: PromptSet = FINE_TUNED):
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.template = prompts["extract"]

    def extract(self, requests: Sequence[ExtractionRequest]) -> list[str]:
        if not requests:
            return []
        prompts = [self.template.render(extract_input(r.sub_question, r.hint, r.passages)) for r in requests]
        outputs = self.model.generate(prompts, max_new_tokens=self.max_new_tokens, stop=self.template.stop)
        return [candidates[0] if candidates else "" for candidates in outputs]

    def describe(self) -> str:
        return f"generative extractor: {self.model.describe()}"


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (split after . ! ? before a capital, digit or quote)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


class SentenceExtractor(Extractor):
    """The passage sentence with the highest cosine similarity to the sub-question."""

    def __init__(self, encoder=None):
        if encoder is None:
            from knowledge_qa.retrieval.dense import SentenceEncoder

            encoder = SentenceEncoder()
        self.encoder = encoder

    def extract(self, requests: Sequence[ExtractionRequest]) -> list[str]:
        sentences = [[s for p in r.passages for s in split_sentences(p.text)] for r in requests]
        flat = [s for group in sentences for s in group]
        if not flat:
            return ["" for _ in requests]
        queries = self.encoder.encode([r.sub_question for r in requests])  # (R, d), unit length
        vectors = self.encoder.encode(flat)  # (S, d)
        facts, start = [], 0
        for row, group in enumerate(sentences):
            if not group:
                facts.append("")
                continue
            similarity = vectors[start : start + len(group)] @ queries[row]  # (n,)
            facts.append(group[int(np.argmax(similarity))])
            start += len(group)
        return facts

    def describe(self) -> str:
        return "sentence extractor (most similar passage sentence)"


def sentence_extractor(retriever=None) -> SentenceExtractor:
    """The sentence extractor; it shares a dense retriever's encoder when that is its own default
    (all-MiniLM-L6-v2), instead of loading the same model twice."""
    from knowledge_qa.retrieval.dense import DEFAULT_ENCODER

    encoder = getattr(retriever, "encoder", None)
    return SentenceExtractor(encoder if getattr(encoder, "name", None) == DEFAULT_ENCODER else None)
