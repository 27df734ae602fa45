"""What the agent needs of a language model: continuations of prompts, and the log-likelihood of
a closed set of options (how actions and yes/no answers are chosen: scoring cannot fail to parse).

Backends: `TransformersModel` (any local seq2seq or causal LM, optionally with a `nagner.peft`
adapter) and `OpenAICompatibleModel` (vLLM, TGI, llama.cpp … over HTTP).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any of the ``stop`` strings."""
    end = min((index for index in (text.find(s) for s in stop if s) if index >= 0), default=len(text))
    return text[:end]


def continuation(prompt: str, option: str) -> str:
    """The text an option is scored as after ``prompt`` by a causal LM, in every backend: with a
    leading space unless the prompt ends in, or the option starts with, white space (so "yes" after
    "Answer:" is " yes", after "Answer:\n" it is "yes")."""
    return option if not prompt or prompt[-1].isspace() or option[:1].isspace() else " " + option


class TextModel(ABC):
    """A text-to-text model. Both methods are batched: one call serves many prompts."""

    @abstractmethod
    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int = 64, num_candidates: int = 1, stop: Sequence[str] = ()
    ) -> list[list[str]]:
        """For each prompt, up to ``num_candidates`` distinct continuations, best first (greedy for one,
        beam search for more on local models). A continuation ends before the first of the ``stop``
        strings it contains; continuations are stripped of surrounding white space."""

    @abstractmethod
    def score(self, prompts: Sequence[str], options: Sequence[str]) -> list[list[float]]:
        """log p(option | prompt), summed over the option's tokens, for every prompt (rows) and
        option (columns). Options are compared with each other, so they should be short and distinct."""

    def describe(self) -> str:
        """One line naming the model, for traces and reports."""
        return type(self).__name__
