"""Supervised text-to-text examples for every GEEK action, built from StrategyQA annotations.

The prompts come from `knowledge_qa.prompts`, the same functions the agent calls at inference, so a
training source is byte-identical to what the agent will show the model in that state.

Trajectory of one question with sub-questions s1..sn (StrategyQA's decomposition, ``#k`` kept as
written, exactly as the agent keeps its plan's text) and aligned answers a1..an::

    for i in 1..n, in the state with (s1, a1) … (s_{i-1}, a_{i-1}) answered:
        action        → "decompose"
        decompose     → format_plan((s_i, a_i) … (s_n, a_n))      (pseudo-answers = aligned answers)
        with s_i open:
        action        → "retrieve" or "self answer"               (`step_kinds`)
        self_answer   → a_i                                        (reason steps only)
        [extract      → a_i from the step's gold passages          (retrieve steps, `extractor_examples`)]
    action            → "final answer"
    final_answer      → "yes" / "no"
    final_answer      → "yes" / "no" from the bare question (no steps), so the model can also answer
                        without any decomposition

With ``with_decomposition=False`` (the paper's "no decomposition" ablation) the question itself is the
one sub-question, as in the agent: action → retrieve / self answer, its answer is all facts joined,
then final_answer → yes / no (no action example afterwards: FinalAnswer is then the only action the
agent allows, so it is never scored).

Step answers (alignment). StrategyQA has no per-step answers, only a list of facts for the whole
question, so each step is given a fact:

1. Texts are compared as bags of tokens: lowercased alphanumeric words, stopwords and one-letter words
   dropped, a plural "s" stripped (so "emmys" meets "emmy").
2. Retrieve steps are aligned first, in step order (facts mostly state retrieved knowledge), then
   reason steps. ``#k`` in a step is replaced by the aligned answer of step k when that is known
   (a comparison step "Is #2 greater than #1?" then meets a fact like "6 is less than 12").
3. A step takes the not-yet-used fact with the largest overlap (ties: the earlier fact). A retrieve step
   whose best overlap is 0 takes the first unused fact (annotators wrote facts roughly in step order);
   a reason step needs an overlap of at least 1.
4. The last step left without a fact is marked "final" and leaves the trajectory: the last step of a
   StrategyQA decomposition is mostly the yes/no question itself ("Is #1 greater than #2?"), which is
   FinalAnswer's job, so plans stop before it and FinalAnswer reads the facts gathered up to it. Its
   only possible answer would be the gold label, and a state holding the label teaches the final
   answer to copy the last line (an earlier version did that: in 918 of 2,061 training trajectories
   the last answer line equalled the target). No state, plan or target ever holds the question's
   gold answer. An earlier step left without a fact gets the placeholder `PLACEHOLDER` ("unknown",
   the word the agent itself records for an empty answer); placeholder answers appear in states and
   plans but are never a self_answer or extract target: training the model to say "unknown" would
   teach it nothing.

The extractor's hint (AddDecomp's pseudo-answer, which the agent passes on) is made noisy in
training: the pseudo-answer of a training plan *is* the aligned fact, so always showing it would teach
the extractor to copy the hint instead of reading the passages, and never showing it would leave the
agent's hints unseen in training. Each extractor example (seeded) shows the true fact as the hint a
third of the time, a fact of another question a third of the time (a wrong guess the passages must
overrule) and no hint otherwise; that is how a core model's guesses look to it at inference.

Everything is deterministic: the same questions and passages give the same examples in the same order
(the distractor passages of extractor examples come from a seeded generator per question and step).
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from knowledge_qa.corpus import Passage
from knowledge_qa.prompts import (
    ACTION_OPTIONS,
    YES_NO_OPTIONS,
    action_prompt,
    decompose_prompt,
    extract_prompt,
    final_answer_prompt,
    format_plan,
    render_state,
    self_answer_prompt,
)
from knowledge_qa.state import REFERENCE, Action, QuestionState, Step
from knowledge_qa.strategyqa import StrategyQuestion, citation_counts, step_evidence_ids, step_kinds

logger = logging.getLogger(__name__)

TASKS = ("action", "decompose", "self_answer", "extract", "final_answer")
PLACEHOLDER = "unknown"
MAX_GOLD_PASSAGES = 3
MAX_DISTRACTORS = 2

# Function words and question words: they match between any step and any fact, so they say nothing
# about which fact answers which step.
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be been before being below
    between both but by can could did do does doing done down during each either else ever every few for
    from further had has have having he her here hers him his how however i if in into is it its itself
    just least less like made make many may me might more most much must my no nor not now of off often
    on once one only or other our out over own per same she should since so some such than that the
    their them then there these they this those through thus to too under until up upon us very was we
    were what when where whether which while who whom whose why will with within without would yes yet
    you your""".split()
)
_TOKEN = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class TextExample:
    """One supervised pair: ``source`` is the prompt the model reads, ``target`` what it should
    write (or, for "action" and "final_answer", the option it should score highest)."""

    task: str
    source: str
    target: str


@dataclass(frozen=True)
class AlignedStep:
    """A decomposition step with its aligned answer. ``how`` says where the answer came from:
    "overlap" (best-overlapping fact), "position" (retrieve step, first unused fact), "final" (the
    last step, without a fact: left to FinalAnswer, in no state or plan; ``answer`` is "") or
    "placeholder"."""

    sub_question: str
    kind: str  # "retrieve" / "reason"
    answer: str
    how: str
    fact_index: int | None = None

    @property
    def has_fact(self) -> bool:
        return self.fact_index is not None


def _tokens(text: str) -> set[str]:
    words = set()
    for word in _TOKEN.findall(text.lower()):
        if word in STOPWORDS or (len(word) == 1 and not word.isdigit()):
            continue
        # A crude plural strip is enough here: only overlap between two short texts is measured.
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        words.add(word)
    return words


def normalise_space(text: str) -> str:
    # The agent normalises whitespace of questions and of parsed plans; the training text must match.
    return " ".join(text.split())


def yes_no(answer: bool) -> str:
    """The option text of a gold answer."""
    return YES_NO_OPTIONS[0] if answer else YES_NO_OPTIONS[1]


def align_steps(question: StrategyQuestion) -> list[AlignedStep]:
    """The decomposition steps with aligned answers (see the module docstring for the rule)."""
    steps = [normalise_space(step) for step in question.decomposition]
    kinds = step_kinds(question)
    facts = [normalise_space(fact) for fact in question.facts]
    fact_tokens = [_tokens(fact) for fact in facts]
    unused = [index for index, fact in enumerate(facts) if fact]
    chosen: dict[int, tuple[int, str]] = {}  # step → (fact index, how)

    def resolved(step: str) -> str:
        def substitute(match: re.Match[str]) -> str:
            k = int(match.group(1)) - 1
            return facts[chosen[k][0]] if k in chosen else " "

        return REFERENCE.sub(substitute, step)

    order = [i for i, kind in enumerate(kinds) if kind == "retrieve"] + [
        i for i, kind in enumerate(kinds) if kind != "retrieve"
    ]
    for step in order:
        if not unused:
            break
        words = _tokens(resolved(steps[step]))
        best = max(unused, key=lambda f: (len(words & fact_tokens[f]), -f))
        if words & fact_tokens[best]:
            chosen[step] = (best, "overlap")
        elif kinds[step] == "retrieve":
            best = unused[0]
            chosen[step] = (best, "position")
        else:
            continue
        unused.remove(best)
    aligned = []
    for step, (text, kind) in enumerate(zip(steps, kinds)):
        if step in chosen:
            index, how = chosen[step]
            aligned.append(AlignedStep(text, kind, facts[index], how, index))
        elif step == len(steps) - 1:
            aligned.append(AlignedStep(text, kind, "", "final"))
        else:
            aligned.append(AlignedStep(text, kind, PLACEHOLDER, "placeholder"))
    return aligned


def alignment_stats(questions: Sequence[StrategyQuestion]) -> dict[str, float]:
    """How the steps of ``questions`` got their answers: counts per kind of step and source, and the
    fraction of steps (and of retrieve steps) with an aligned fact."""
    counts: Counter[str] = Counter()
    for question in questions:
        for step in align_steps(question):
            counts["steps"] += 1
            counts[f"{step.kind}_steps"] += 1
            counts[f"{step.kind}_{step.how}"] += 1
            counts["with_fact"] += step.has_fact
            counts[f"{step.kind}_with_fact"] += step.has_fact
    stats: dict[str, float] = dict(sorted(counts.items()))
    stats["fraction_with_fact"] = counts["with_fact"] / max(1, counts["steps"])
    stats["fraction_retrieve_with_fact"] = counts["retrieve_with_fact"] / max(1, counts["retrieve_steps"])
    return stats


def _step_option(kind: str) -> str:
    return ACTION_OPTIONS[Action.RETRIEVE_EXTRACT if kind == "retrieve" else Action.SELF_ANSWER]


def _whole_answer(question: StrategyQuestion) -> str:
    """The answer to the question as its own sub-question (no-decomposition mode): every fact."""
    facts = [normalise_space(fact) for fact in question.facts if fact.strip()]
    return " ".join(facts) if facts else ""


def core_examples(
    questions: Sequence[StrategyQuestion], *, with_decomposition: bool = True
) -> list[TextExample]:
    """The core model's examples (action, decompose, self_answer, final_answer) of every question
    with a gold answer, question by question in trajectory order. Questions without a gold answer
    are skipped (nothing to supervise the final answer with); questions without a decomposition
    (or, with ``with_decomposition=False``, without facts) give only the bare final-answer example."""
    examples: list[TextExample] = []
    skipped = 0
    for question in questions:
        if question.answer is None:
            skipped += 1
            continue
        text = normalise_space(question.question)
        gold = yes_no(question.answer)
        if with_decomposition and question.decomposition:
            steps = [step for step in align_steps(question) if step.how != "final"]
            examples += _decomposed_trajectory(text, steps, gold)
        elif not with_decomposition and _whole_answer(question):
            examples += _undecomposed_trajectory(text, question, gold)
        examples += final_answer_examples([question])
    if skipped:
        logger.info("core examples: skipped %d questions without a gold answer", skipped)
    return examples


def _decomposed_trajectory(question: str, steps: list[AlignedStep], gold: str) -> list[TextExample]:
    examples = []
    answered: list[tuple[str, str]] = []
    decompose = ACTION_OPTIONS[Action.ADD_DECOMP]
    for index, step in enumerate(steps):
        state = render_state(question, answered)
        examples.append(TextExample("action", action_prompt(state), decompose))
        plan = format_plan([(later.sub_question, later.answer) for later in steps[index:]])
        examples.append(TextExample("decompose", decompose_prompt(state), plan))
        open_state = render_state(question, answered, step.sub_question)
        examples.append(TextExample("action", action_prompt(open_state), _step_option(step.kind)))
        if step.kind == "reason" and step.how != "placeholder":
            examples.append(TextExample("self_answer", self_answer_prompt(open_state), step.answer))
        answered.append((step.sub_question, step.answer))
    state = render_state(question, answered)
    examples.append(TextExample("action", action_prompt(state), ACTION_OPTIONS[Action.FINAL_ANSWER]))
    examples.append(TextExample("final_answer", final_answer_prompt(state), gold))
    return examples


def _undecomposed_trajectory(question: str, record: StrategyQuestion, gold: str) -> list[TextExample]:
    # As in the agent without decomposition: the question is the open sub-question from the start.
    kind = "retrieve" if "retrieve" in step_kinds(record) else "reason"
    answer = _whole_answer(record)
    open_state = render_state(question, [], question)
    examples = [TextExample("action", action_prompt(open_state), _step_option(kind))]
    if kind == "reason":
        examples.append(TextExample("self_answer", self_answer_prompt(open_state), answer))
    examples.append(
        TextExample("final_answer", final_answer_prompt(render_state(question, [(question, answer)])), gold)
    )
    return examples


def extractor_examples(
    questions: Sequence[StrategyQuestion],
    passages_by_id: Mapping[str, Passage],
    *,
    with_decomposition: bool = True,
    seed: int = 0,
    stats: Counter[str] | None = None,
) -> list[TextExample]:
    """The extractor's examples: per retrieve step with an aligned fact, the prompt over its gold
    passages (at most `MAX_GOLD_PASSAGES`, most-cited first) mixed with up to `MAX_DISTRACTORS`
    other passages (first the question's evidence for other steps, which is on topic but answers
    something else, then random ones), in a seeded order; target = the aligned fact. The
    sub-question has its ``#k`` resolved with the aligned answers, as the agent resolves it for
    retrieval. Steps whose gold passages are all missing from ``passages_by_id`` are skipped.
    ``stats`` (if given) is updated with: retrieve_steps, examples, no_fact, no_passages.

    With ``with_decomposition=False``: one example per question that has a retrieve step, for the
    question itself, over its most-cited evidence passages; target = all facts joined.
    """
    counts = stats if stats is not None else Counter()
    pool = sorted(passages_by_id)  # sorted once so the random distractors do not depend on dict order
    all_facts = [normalise_space(fact) for q in questions for fact in q.facts if fact.strip()]
    examples: list[TextExample] = []
    for question in questions:
        citations = citation_counts(question)
        all_evidence = set(citations)
        per_step = step_evidence_ids(question)
        if with_decomposition:
            steps = align_steps(question)
            state = QuestionState(normalise_space(question.question))
            tasks = []
            for index, step in enumerate(steps):
                if step.kind == "retrieve":
                    # The agent's query: the open sub-question with "#k" replaced by earlier answers.
                    tasks.append(
                        (
                            index,
                            state.resolve_references(step.sub_question),
                            step.answer if step.has_fact else "",
                            per_step[index],
                        )
                    )
                state.steps.append(
                    Step(Action.SELF_ANSWER, sub_question=step.sub_question, output=step.answer)
                )
        else:
            whole = _whole_answer(question)
            tasks = (
                [(-1, normalise_space(question.question), whole, all_evidence)]
                if "retrieve" in step_kinds(question)
                else []
            )
        for index, query, target, gold_ids in tasks:
            counts["retrieve_steps"] += 1
            if not target:
                counts["no_fact"] += 1
                continue
            gold = sorted(
                (pid for pid in gold_ids if pid in passages_by_id),
                key=lambda pid: (-citations.get(pid, 0), pid),
            )
            if not gold:
                counts["no_passages"] += 1
                continue
            rng = random.Random(f"{seed}/{question.qid}/{index}")
            chosen = gold[:MAX_GOLD_PASSAGES]
            chosen += _distractors(rng, pool, passages_by_id, sorted(all_evidence - gold_ids), all_evidence)
            rng.shuffle(chosen)  # the gold passage must not always come first
            passages = [passages_by_id[pid] for pid in chosen]
            hint = noisy_hint(rng, target, all_facts)
            examples.append(TextExample("extract", extract_prompt(query, hint, passages), target))
            counts["examples"] += 1
    logger.info("extractor examples: %s", dict(counts))
    return examples


def noisy_hint(rng: random.Random, target: str, facts: Sequence[str]) -> str:
    """The hint of one extractor example: the target (1/3), another fact (1/3, a wrong guess) or none."""
    draw = rng.random()
    if draw < 1 / 3:
        return target
    others = [fact for fact in (facts[rng.randrange(len(facts))] for _ in range(3)) if fact != target] if facts else []
    return others[0] if draw < 2 / 3 and others else ""


def final_answer_example(question: StrategyQuestion, facts: Sequence[tuple[str, str]]) -> TextExample:
    """The FinalAnswer example of a question (with a gold answer) whose state holds ``facts``, its
    (sub-question, answer) lines."""
    return TextExample("final_answer", final_answer_prompt(render_state(normalise_space(question.question), list(facts))),
                       yes_no(bool(question.answer)))


def final_answer_examples(questions: Sequence[StrategyQuestion]) -> list[TextExample]:
    """One bare-question FinalAnswer example per question with a gold answer (for questions that come
    with an answer only, like StrategyQA's extra training questions)."""
    return [final_answer_example(q, []) for q in questions if q.answer is not None]


def _distractors(
    rng: random.Random,
    pool: list[str],
    passages_by_id: Mapping[str, Passage],
    same_question: list[str],
    exclude: set[str],
) -> list[str]:
    """Up to `MAX_DISTRACTORS` passage ids: the question's evidence for other steps first (hard
    negatives), then random passages of the pool outside the question's evidence."""
    on_topic = [pid for pid in same_question if pid in passages_by_id]
    rng.shuffle(on_topic)
    chosen = on_topic[:MAX_DISTRACTORS]
    # Bounded tries: the pool may hold almost nothing but this question's evidence.
    for _ in range(20):
        if len(chosen) >= MAX_DISTRACTORS or not pool:
            break
        pid = pool[rng.randrange(len(pool))]
        if pid not in exclude and pid not in chosen:
            chosen.append(pid)
    return chosen


def example_counts(examples: Sequence[TextExample]) -> dict[str, int]:
    """Examples per task (every task listed, zero included), plus "total"."""
    counts = Counter(example.task for example in examples)
    return {**{task: counts.get(task, 0) for task in TASKS}, "total": len(examples)}
