"""RetrieveExtract's second half: turn the retrieved passages into one short fact for the open
sub-question.

* `GenerativeExtractor` — the paper's extractor: a text-to-text model writes the fact from the
  sub-question, AddDecomp's pseudo-answer hint and the passages (`prompts.extract_prompt`).
* `SentenceExtractor` — picks the passage sentence closest to the sub-question in sentence-embedding
  space (all-MiniLM-L6-v2 by default). It writes nothing new, so it needs no training and cannot
  produce noise; it is the extractor of the CPU benchmark, where a generator that can be trained in
  the time available writes poor facts. Two options, both off by default:
  - ``use_hint``: the query is the sub-question followed by AddDecomp's hint (a weak core model's
    guess pulls the choice toward its own mistakes, hence off);
  - ``lexical_weight`` λ: the cosine is reranked with λ · the IDF-weighted share of the query's
    content words that the sentence contains (IDF over the request's own candidate sentences), so
    a sentence that names the asked-about entity and property beats a merely topical one. A
    sentence-embedding model scores topic similarity; the words an answer must share with its
    question are what a cross-encoder would add, and no cross-encoder ships offline.
  `bench/extraction.py` measures the reranking on StrategyQA's gold evidence (the hint needs a
  trained core model to write it, so it is not measured there).
"""

from __future__ import annotations

import math
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
    """The passage sentence with the highest cosine similarity to the query (the sub-question, and
    with ``use_hint`` the hint), plus ``lexical_weight`` × `lexical_overlap` (module docstring)."""

    def __init__(self, encoder=None, use_hint: bool = False, lexical_weight: float = 0.0):
        if encoder is None:
            from knowledge_qa.retrieval.dense import SentenceEncoder

            encoder = SentenceEncoder()
        if lexical_weight < 0:
            raise ValueError(f"lexical_weight must be >= 0, got {lexical_weight}")
        self.encoder = encoder
        self.use_hint = use_hint
        self.lexical_weight = lexical_weight

    def query(self, request: ExtractionRequest) -> str:
        """The text the sentences are compared with."""
        hint = request.hint.strip() if self.use_hint else ""
        return f"{request.sub_question} {hint}" if hint else request.sub_question

    def extract(self, requests: Sequence[ExtractionRequest]) -> list[str]:
        sentences = [[s for p in r.passages for s in split_sentences(p.text)] for r in requests]
        flat = [s for group in sentences for s in group]
        if not flat:
            return ["" for _ in requests]
        texts = [self.query(r) for r in requests]
        queries = self.encoder.encode(texts)  # (R, d), unit length
        vectors = self.encoder.encode(flat)  # (S, d)
        facts, start = [], 0
        for row, group in enumerate(sentences):
            if not group:
                facts.append("")
                continue
            score = vectors[start : start + len(group)] @ queries[row]  # (n,)
            if self.lexical_weight:
                score = score + self.lexical_weight * np.array(lexical_overlap(texts[row], group))
            facts.append(group[int(np.argmax(score))])
            start += len(group)
        return facts

    def describe(self) -> str:
        options = [name for name, on in (("hint", self.use_hint), (f"lexical {self.lexical_weight:g}", self.lexical_weight)) if on]
        return "sentence extractor (most similar passage sentence" + (f"; {', '.join(options)})" if options else ")")


_WORD = re.compile(r"[a-z0-9]+")
_REFERENCE = re.compile(r"#\d+")
STOPWORDS = frozenset(
    "a an the of in on at to for from by with about into over and or not no is are was were be been being "
    "do does did has have had can could would should will may might must what which who whom whose when "
    "where why how many much it its this that these those there their they he she his her as than any "
    "some all more most".split()
)


def content_words(text: str) -> set[str]:
    """Lower-cased words of ``text`` that are not stopwords (``#k`` step references dropped)."""
    return {w for w in _WORD.findall(_REFERENCE.sub(" ", text.lower())) if w not in STOPWORDS}


def lexical_overlap(query: str, sentences: Sequence[str]) -> list[float]:
    """For each sentence, Σ idf(w) over the query's content words it contains / Σ idf(w) over all
    the query's content words (0 when the query has none); idf(w) = log(1 + N / (1 + df(w))) over
    the N ``sentences``."""
    words = [content_words(s) for s in sentences]
    wanted = content_words(query)
    if not wanted:
        return [0.0 for _ in sentences]
    n = len(sentences)
    idf = {w: math.log(1 + n / (1 + sum(w in s for s in words))) for w in wanted}
    total = sum(idf.values())
    return [sum(idf[w] for w in wanted & s) / total for s in words]


def sentence_extractor(retriever=None, use_hint: bool = False, lexical_weight: float = 0.0) -> SentenceExtractor:
    """The sentence extractor (`SentenceExtractor`'s options); it shares a dense retriever's encoder
    when that is its own default (all-MiniLM-L6-v2), instead of loading the same model twice."""
    from knowledge_qa.retrieval.dense import DEFAULT_ENCODER

    encoder = getattr(retriever, "encoder", None)
    shared = encoder if getattr(encoder, "name", None) == DEFAULT_ENCODER else None
    return SentenceExtractor(shared, use_hint=use_hint, lexical_weight=lexical_weight)
