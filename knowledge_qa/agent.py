"""The GEEK loop: gradually excavate knowledge for an implicit question, one action at a time.

    state = question (+ (sub-question, answer) pairs so far)
    repeat until FinalAnswer or the step cap:
        action = the allowed action the core model scores highest
        AddDecomp        plan the remaining sub-questions with pseudo-answers; the next one opens
        RetrieveExtract  retrieve passages for the open sub-question; the extractor writes a fact
        SelfAnswer       the core model answers the open sub-question itself
        FinalAnswer      yes / no, scored; the branch stops
    strategy exploration: distinct first sub-questions among the beam candidates of an AddDecomp open
    new branches (up to ``branches`` per question); the branches vote, ties go to the surer margin.

Allowed actions follow from the state, which keeps the loop well formed: with an open sub-question
only RetrieveExtract / SelfAnswer; without one, AddDecomp / FinalAnswer. Ablations remove actions
(no decomposition: the question itself is the one sub-question; no retrieval: no RetrieveExtract)
or exploration. Model output that cannot be used (an unparsable plan, an empty fact, action scores
that are all -inf) never stops the loop: a fixed fallback replaces it and the step records why.

All questions of a batch and all their branches advance together, so every model call is batched.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from knowledge_qa.extraction import ExtractionRequest, Extractor, GenerativeExtractor
from knowledge_qa.models.base import TextModel
from knowledge_qa.prompts import (
    ACTION_OPTIONS,
    FINE_TUNED,
    YES_NO_OPTIONS,
    PromptSet,
    parse_plan,
    render_state,
)
from knowledge_qa.retrieval.base import Retriever
from knowledge_qa.state import Action, QuestionState, Step


@dataclass
class AgentOptions:
    """Settings of the loop. ``decomposition`` / ``retrieval`` / ``exploration`` are the ablation
    switches of the paper's table."""

    decomposition: bool = True
    retrieval: bool = True
    exploration: bool = True
    branches: int = 3  # exploration: at most this many branches per question (beam width at AddDecomp)
    max_steps: int = 12  # actions per branch before FinalAnswer is forced
    max_sub_questions: int = 5  # AddDecomp steps per branch
    top_k: int = 3  # passages given to the extractor
    plan_tokens: int = 96
    answer_tokens: int = 32

    def __post_init__(self) -> None:
        if self.branches < 1 or self.max_steps < 1 or self.top_k < 1 or self.max_sub_questions < 1:
            raise ValueError("branches, max_steps, max_sub_questions and top_k must be at least 1")


@dataclass
class AgentResult:
    """The answer to one question and everything that led to it."""

    question: str
    answer: str  # "yes" / "no"
    votes: dict[str, int]
    branches: list[QuestionState]
    seconds: float  # this question's share of the batch's wall time
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def answer_bool(self) -> bool:
        return self.answer == "yes"

    def steps(self) -> list[Step]:
        return [step for branch in self.branches for step in branch.steps]

    def action_counts(self) -> dict[str, int]:
        counts = Counter(step.action.value for step in self.steps())
        return {action.value: counts.get(action.value, 0) for action in Action}

    def retrieval_calls(self) -> int:
        return sum(step.action == Action.RETRIEVE_EXTRACT for step in self.steps())

    def fallbacks(self) -> int:
        return sum(bool(step.fallback) for step in self.steps())

    def to_dict(self) -> dict[str, Any]:
        """The JSON trace: every branch, every action with its input and output."""
        return {
            "question": self.question,
            "prediction": self.answer,
            "votes": self.votes,
            "action_counts": self.action_counts(),
            "steps": len(self.steps()),
            "retrieval_calls": self.retrieval_calls(),
            "fallbacks": self.fallbacks(),
            "seconds": round(self.seconds, 4),
            "branches": [
                {"answer": b.answer, "margin": round(b.answer_margin, 4), "steps": [s.to_dict() for s in b.steps]}
                for b in self.branches
            ],
            **self.extra,
        }


@dataclass
class _Branch:
    question_index: int
    state: QuestionState


class GeekAgent:
    """The agent: a core model (actions, AddDecomp, SelfAnswer, FinalAnswer), an extractor (a
    `TextModel` writing facts, any `Extractor`, or None: the core model writes them), a retriever
    (required unless retrieval is switched off) and optionally an answerer: a separate model for
    FinalAnswer's yes / no (a small core model trained on every action answers poorly; one trained on
    final answers alone can do better). ``prompts``: how each action is asked (`FINE_TUNED`, the
    default, for models trained with `knowledge-qa train`; `knowledge_qa.few_shot.FEW_SHOT` for LLMs
    that were not)."""

    def __init__(
        self,
        core: TextModel,
        *,
        extractor: TextModel | Extractor | None = None,
        retriever: Retriever | None = None,
        answerer: TextModel | None = None,
        options: AgentOptions | None = None,
        prompts: PromptSet | None = None,
    ):
        self.core = core
        self.prompts = prompts or FINE_TUNED
        self.answerer = answerer or core
        self.options = options or AgentOptions()
        extractor = extractor or core
        if not isinstance(extractor, Extractor):
            extractor = GenerativeExtractor(extractor, self.options.answer_tokens, self.prompts)
        self.extractor = extractor
        self.retriever = retriever
        if self.options.retrieval and retriever is None:
            raise ValueError("retrieval is on but no retriever was given (pass one, or AgentOptions(retrieval=False))")

    # ---------------------------------------------------------------- public API
    def answer(self, question: str) -> AgentResult:
        """Run the loop on one question."""
        return self.answer_batch([question])[0]

    def answer_batch(self, questions: Sequence[str]) -> list[AgentResult]:
        """Run the loop on many questions at once (every model call batched across them)."""
        began = time.perf_counter()
        active = [_Branch(i, self._initial_state(q)) for i, q in enumerate(questions)]
        finished: list[_Branch] = []
        while active:
            self._choose_and_run(active)
            finished += [b for b in active if b.state.answer is not None]
            active = [b for b in active if b.state.answer is None]
        share = (time.perf_counter() - began) / max(1, len(questions))
        results = []
        for index, question in enumerate(questions):
            branches = [b.state for b in finished if b.question_index == index]
            answer, votes = vote(branches)
            results.append(AgentResult(question, answer, votes, branches, share))
        return results

    # ---------------------------------------------------------------- the loop
    def _initial_state(self, question: str) -> QuestionState:
        question = " ".join(question.split())
        if not question:
            raise ValueError("empty question")
        state = QuestionState(question)
        if not self.options.decomposition:
            state.open_sub_question = question  # the question itself is the one sub-question
        return state

    def allowed_actions(self, state: QuestionState) -> list[Action]:
        """The actions that make sense in ``state`` under the ablation switches."""
        options = self.options
        if len(state.steps) >= options.max_steps:
            return [Action.FINAL_ANSWER]
        if state.open_sub_question is not None:
            return ([Action.RETRIEVE_EXTRACT] if options.retrieval else []) + [Action.SELF_ANSWER]
        may_decompose = options.decomposition and state.count(Action.ADD_DECOMP) < options.max_sub_questions
        return ([Action.ADD_DECOMP] if may_decompose else []) + [Action.FINAL_ANSWER]

    def _choose_and_run(self, branches: list[_Branch]) -> None:
        chosen = self._choose_actions(branches)
        by_action: dict[Action, list[tuple[_Branch, dict[str, float], str]]] = {}
        for branch, (action, scores, fallback) in zip(branches, chosen):
            by_action.setdefault(action, []).append((branch, scores, fallback))
        for action, group in by_action.items():
            runner = {
                Action.ADD_DECOMP: self._add_decomp,
                Action.RETRIEVE_EXTRACT: self._retrieve_extract,
                Action.SELF_ANSWER: self._self_answer,
                Action.FINAL_ANSWER: self._final_answer,
            }[action]
            runner(group, branches)

    def _choose_actions(self, branches: list[_Branch]) -> list[tuple[Action, dict[str, float], str]]:
        """(action, scores of the allowed actions, fallback reason) per branch; one scoring call per
        distinct set of allowed actions."""
        allowed = [self.allowed_actions(b.state) for b in branches]
        chosen: list[tuple[Action, dict[str, float], str] | None] = [None] * len(branches)
        groups: dict[tuple[Action, ...], list[int]] = {}
        for index, actions in enumerate(allowed):
            if len(actions) == 1:
                reason = "step cap reached" if len(branches[index].state.steps) >= self.options.max_steps else ""
                chosen[index] = (actions[0], {}, reason)
            else:
                groups.setdefault(tuple(actions), []).append(index)
        for actions, indices in groups.items():
            prompts = [self.prompts["action"].render(self._state_text(branches[i].state)) for i in indices]
            rows = self.core.score(prompts, [ACTION_OPTIONS[a] for a in actions])
            for index, row in zip(indices, rows):
                scores = {a.value: s for a, s in zip(actions, row)}
                if not any(math.isfinite(s) for s in row):
                    chosen[index] = (fallback_action(actions), scores, "action scores unusable (all -inf)")
                else:
                    chosen[index] = (actions[max(range(len(row)), key=row.__getitem__)], scores, "")
        return chosen  # type: ignore[return-value]

    @staticmethod
    def _state_text(state: QuestionState) -> str:
        return render_state(state.question, state.answered(), state.open_sub_question)

    def _add_decomp(self, group, all_branches: list[_Branch]) -> None:
        options = self.options
        explore = options.exploration and options.branches > 1
        template = self.prompts["decompose"]
        prompts = [template.render(self._state_text(b.state)) for b, _, _ in group]
        outputs = self.core.generate(prompts, max_new_tokens=options.plan_tokens,
                                     num_candidates=options.branches if explore else 1, stop=template.stop)
        for (branch, scores, reason), candidates in zip(group, outputs):
            plans = [(text, parse_plan(text)) for text in candidates]
            usable = [(text, plan) for text, plan in plans if plan]
            if not usable:
                # Nothing to decompose into: answer from what is known (recorded in the trace).
                raw = candidates[0] if candidates else ""
                branch.state.steps.append(Step(Action.ADD_DECOMP, raw_output=raw, action_scores=scores, fallback="unusable plan output; answering now"))
                self._final_answer([(branch, {}, "after unusable plan output")], all_branches)
                continue
            firsts = list(dict.fromkeys(plan[0][0] for _, plan in usable))
            siblings = sum(b.question_index == branch.question_index and b.state.answer is None for b in all_branches)
            budget = max(0, options.branches - siblings) if explore else 0
            base = branch.state.copy()
            for number, first in enumerate(firsts[: 1 + budget]):
                text, plan = next((t, p) for t, p in usable if p[0][0] == first)
                target = branch if number == 0 else _Branch(branch.question_index, base.copy())
                state = target.state
                state.open_sub_question, state.open_hint = plan[0]
                state.plan = plan[1:]
                state.steps.append(
                    Step(Action.ADD_DECOMP, sub_question=first, output=first, hint=plan[0][1], action_scores=scores, fallback=reason, raw_output=text)
                )
                if number:
                    all_branches.append(target)

    def _retrieve_extract(self, group, _all: list[_Branch]) -> None:
        queries = [b.state.resolve_references(b.state.open_sub_question or b.state.question) for b, _, _ in group]
        assert self.retriever is not None
        hits = self.retriever.search_batch(queries, self.options.top_k)
        requests = [
            ExtractionRequest(query, b.state.open_hint, [hit.passage for hit in found])
            for (b, _, _), query, found in zip(group, queries, hits)
        ]
        facts = self.extractor.extract(requests)
        for (branch, scores, reason), found, fact in zip(group, hits, facts):
            fallback = reason
            if not fact:
                fact = first_sentence(found[0].passage.text) if found else "unknown"
                fallback = reasons(reason, "empty extractor output; used the top passage's first sentence" if found else "nothing retrieved")
            self._close(branch.state, Action.RETRIEVE_EXTRACT, fact, scores, fallback,
                        passages=[{"id": h.passage.id, "title": h.passage.title, "score": round(h.score, 4)} for h in found])

    def _self_answer(self, group, _all: list[_Branch]) -> None:
        template = self.prompts["self_answer"]
        prompts = [template.render(self._state_text(b.state)) for b, _, _ in group]
        outputs = self.core.generate(prompts, max_new_tokens=self.options.answer_tokens, stop=template.stop)
        for (branch, scores, reason), candidates in zip(group, outputs):
            answer = candidates[0] if candidates else ""
            fallback = reason if answer else reasons(reason, "empty answer; recorded as unknown")
            self._close(branch.state, Action.SELF_ANSWER, answer or "unknown", scores, fallback)

    @staticmethod
    def _close(state: QuestionState, action: Action, answer: str, scores: dict[str, float], fallback: str, passages=None) -> None:
        """Answer the open sub-question and move the plan's next hint forward."""
        state.steps.append(
            Step(action, sub_question=state.open_sub_question or state.question, output=answer, hint=state.open_hint,
                 passages=passages or [], action_scores=scores, fallback=fallback)
        )
        state.open_sub_question, state.open_hint = None, ""

    def _final_answer(self, group, _all: list[_Branch]) -> None:
        prompts = [self.prompts["final_answer"].render(self._state_text(b.state)) for b, _, _ in group]
        rows = self.answerer.score(prompts, list(YES_NO_OPTIONS))
        for (branch, scores, reason), (yes, no) in zip(group, rows):
            fallback = reason
            if not (math.isfinite(yes) or math.isfinite(no)):
                yes, no = 0.0, 0.0
                fallback = reasons(reason, "yes/no scores unusable (all -inf); answered no")
            margin = yes - no if math.isfinite(yes) and math.isfinite(no) else (math.inf if math.isfinite(yes) else -math.inf)
            state = branch.state
            state.answer = "yes" if margin > 0 else "no"
            state.answer_margin = margin if math.isfinite(margin) else math.copysign(1e9, margin)
            state.steps.append(Step(Action.FINAL_ANSWER, output=state.answer, action_scores=scores, fallback=fallback))


def reasons(*parts: str) -> str:
    """The fallback reasons of one step, in the order they happened (an action chosen by the fixed
    fallback, then an unusable output), joined by "; "."""
    return "; ".join(part for part in parts if part)


def fallback_action(actions: Sequence[Action]) -> Action:
    """The fixed choice when action scores are unusable: retrieve if allowed, else answer directly."""
    for preferred in (Action.RETRIEVE_EXTRACT, Action.SELF_ANSWER, Action.FINAL_ANSWER):
        if preferred in actions:
            return preferred
    return actions[0]


def vote(branches: Sequence[QuestionState]) -> tuple[str, dict[str, int]]:
    """Majority vote of the branches' answers; a tie goes to the larger summed margin toward it."""
    votes = Counter(b.answer for b in branches if b.answer)
    counts = {"yes": votes.get("yes", 0), "no": votes.get("no", 0)}
    if counts["yes"] != counts["no"]:
        return ("yes" if counts["yes"] > counts["no"] else "no"), counts
    margin = sum(b.answer_margin for b in branches)
    return ("yes" if margin > 0 else "no"), counts


def first_sentence(text: str, limit: int = 200) -> str:
    """The first sentence of ``text`` (at most ``limit`` characters)."""
    end = text.find(". ")
    return (text[: end + 1] if 0 <= end < limit else text[:limit]).strip()
