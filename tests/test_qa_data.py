"""StrategyQA question files, step annotations, training examples, the sample QA data and the
derived-corpus conversion script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from knowledge_qa.corpus import Passage, iter_titles, read_corpus
from knowledge_qa.errors import QAInputError
from knowledge_qa.prompts import (
    action_prompt,
    decompose_prompt,
    extract_prompt,
    final_answer_prompt,
    render_state,
)
from knowledge_qa.strategyqa import (
    StrategyQuestion,
    citation_counts,
    evidence_ids,
    majority_answer,
    question_id,
    read_questions,
    step_evidence_ids,
    step_kinds,
    write_questions_jsonl,
)
from knowledge_qa.training.examples import (
    PLACEHOLDER,
    TextExample,
    align_steps,
    alignment_stats,
    core_examples,
    example_counts,
    extractor_examples,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLE_QUESTIONS = REPO / "data" / "qa_questions.json"
SAMPLE_CORPUS = REPO / "data" / "qa_corpus.jsonl"
STRATEGYQA = REPO.parent / "shared" / "data" / "strategyqa"

OP = ["operation"]


def write_lines(path: Path, records: list) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8"
    )
    return path


# ------------------------------------------------------------------------------ read_questions
def test_sample_questions_read_and_match_the_corpus():
    questions = read_questions(SAMPLE_QUESTIONS)
    passages = read_corpus(SAMPLE_CORPUS)
    ids = {p.id for p in passages}
    assert len(questions) >= 12
    assert sum(q.answer for q in questions) * 2 == len(questions)  # balanced yes / no
    for question in questions:
        assert question.decomposition and question.facts and len(question.evidence) == 3
        assert evidence_ids(question) <= ids, question.question
        assert all(len(annotation) == len(question.decomposition) for annotation in question.evidence)
    # Two-level search needs documents with more than one passage.
    assert sum(len(group) > 1 for _, group in iter_titles(passages)) >= 10
    assert len(passages) >= 35


def test_real_dev_split_reads():
    path = STRATEGYQA / "dev.json"
    if not path.is_file():
        pytest.skip("StrategyQA dev.json not available")
    questions = read_questions(path)
    assert len(questions) == 229
    assert sum(q.answer for q in questions) == 107
    assert majority_answer(questions) is False
    assert all(len(step_kinds(q)) == len(q.decomposition) for q in questions)


def test_jsonl_and_answer_spellings(tmp_path):
    path = write_lines(
        tmp_path / "q.jsonl",
        [
            {"qid": "a", "question": " Is it?  ", "answer": "Yes"},
            "",
            {"qid": 7, "question": "Is that?", "answer": "FALSE"},
            {"question": "Is this?", "answer": None, "decomposition": ["x"], "facts": []},
            {"question": "Or this?"},
        ],
    )
    questions = read_questions(path)
    assert [q.answer for q in questions] == [True, False, None, None]
    assert [q.qid for q in questions[:2]] == ["a", "7"]
    assert questions[0].question == "Is it?"
    # A missing qid is a stable hash of the text: same text, same id (whitespace and case ignored).
    assert questions[2].qid == question_id("Is this?") == question_id("is  THIS?")
    assert len(questions[2].qid) == 20 and questions[2].qid != questions[3].qid


def test_write_and_read_back(tmp_path):
    questions = read_questions(SAMPLE_QUESTIONS)
    out = tmp_path / "out.jsonl"
    assert write_questions_jsonl(questions, out) == len(questions)
    assert read_questions(out) == questions


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "bad JSON"),
        ('["a list"]', "expected a question object"),
        ('{"qid": "x"}', "no 'question'"),
        ('{"question": 3}', "'question' must be a string"),
        ('{"question": "   "}', "'question' is empty"),
        ('{"question": "Q?", "answer": "maybe"}', "'answer' must be"),
        ('{"question": "Q?", "answer": 1}', "'answer' must be"),
        ('{"question": "Q?", "decomposition": "one step"}', "'decomposition' must be a list of strings"),
        ('{"question": "Q?", "facts": ["ok", 2]}', "'facts' must be a list of strings"),
        ('{"question": "Q?", "evidence": "x"}', "'evidence' must be a list"),
        ('{"question": "Q?", "qid": ["x"]}', "'qid' must be a string"),
        ('{"qid": "first", "question": "Again?"}', "duplicate qid 'first' (first at line 1)"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "bad.jsonl", ['{"qid": "first", "question": "Fine?"}', "", line])
    with pytest.raises(QAInputError) as caught:
        read_questions(path)
    assert caught.value.path == str(path) and caught.value.line == 3
    assert message in caught.value.message
    assert f"{path}:3: " in str(caught.value)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("nope", "expected a question object"),
        ({"question": ""}, "'question' is empty"),
        ({"question": "Q?", "answer": "perhaps"}, "'answer' must be"),
        ({"qid": "a", "question": "Again?"}, "duplicate qid 'a' (first at line 2)"),
    ],
)
def test_json_list_errors_name_the_line_the_record_starts_on(tmp_path, record, message):
    path = tmp_path / "bad.json"
    # [ / { / "qid" / "question" / }, / the second record starts on line 6
    path.write_text(json.dumps([{"qid": "a", "question": "Fine?"}, record], indent=1), encoding="utf-8")
    with pytest.raises(QAInputError) as caught:
        read_questions(path)
    assert caught.value.path == str(path) and caught.value.line == 6
    assert message in caught.value.message


def test_broken_json_list_and_empty_files(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('[\n {"question": "Q?"},\n {"question": }\n]\n', encoding="utf-8")
    with pytest.raises(QAInputError, match="bad JSON") as caught:
        read_questions(broken)
    assert caught.value.line == 3
    for name, text, message in [("empty.json", "  \n", "empty"), ("none.json", "[]", "no questions")]:
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(QAInputError, match=message):
            read_questions(tmp_path / name)
    with pytest.raises(QAInputError, match="not found"):
        read_questions(tmp_path / "missing.json")


# ------------------------------------------------------------------------------ step annotations
def annotated() -> StrategyQuestion:
    # 4 annotators × 5 steps (annotator 3 annotates only 3 steps: step 5 is covered by nobody but 1, 2, 4).
    steps = ["s1", "s2", "s3", "s4", "s5", "s6"]
    evidence = [
        [[["A-1", "A-2"]], [["B-1"], "no_evidence"], [["C-1"]], OP, ["no_evidence"]],
        [[["A-1"]], ["no_evidence"], [["C-2"]], OP, ["no_evidence", "operation"]],
        [[["A-3"]], OP, OP],
        [[["A-1"]], OP, ["no_evidence"], ["no_evidence"], OP],
    ]
    return StrategyQuestion("q", "Q?", True, steps, [], evidence)


def test_step_kinds_follow_the_annotator_majority():
    # s1: 4/4 cite; s2: 1/4; s3: 2/4 (tie → retrieve); s4, s5: none; s6: no annotator covers it.
    assert step_kinds(annotated()) == ["retrieve", "reason", "retrieve", "reason", "reason", "reason"]


def test_evidence_ids_per_step_and_overall():
    question = annotated()
    assert step_evidence_ids(question) == [
        {"A-1", "A-2", "A-3"},
        {"B-1"},
        {"C-1", "C-2"},
        set(),
        set(),
        set(),
    ]
    assert evidence_ids(question) == {"A-1", "A-2", "A-3", "B-1", "C-1", "C-2"}
    assert citation_counts(question)["A-1"] == 3


def test_majority_answer():
    def q(answer):
        return StrategyQuestion(str(answer), "Q?", answer, [], [], [])

    assert majority_answer([q(True), q(True), q(False)]) is True
    assert majority_answer([q(True), q(False), q(None)]) is False  # tie → no
    with pytest.raises(ValueError):
        majority_answer([q(None)])


# ------------------------------------------------------------------------------ training examples
FACT = "Aristotle lived from 384 BC to 322 BC."
S1 = "When did Aristotle live?"
S2 = "Was the laptop invented before #1?"


def two_step() -> StrategyQuestion:
    evidence = [[[["Aristotle-0"]], OP]] * 3
    return StrategyQuestion("two", "Did  Aristotle use a laptop?", False, [S1, S2], [FACT], evidence)


def test_core_examples_exact_trajectory():
    # S2 is the yes/no question itself and no fact answers it: it is FinalAnswer's job, so the
    # trajectory ends before it and no state, plan or target holds the gold "no" but FinalAnswer's.
    examples = core_examples([two_step()])
    assert [(e.task, e.target) for e in examples] == [
        ("action", "decompose"),
        ("decompose", f"Q: {S1} A: {FACT}"),
        ("action", "retrieve"),
        ("action", "final answer"),
        ("final_answer", "no"),
        ("final_answer", "no"),
    ]
    question = "Did Aristotle use a laptop?"  # whitespace normalised, as the agent does
    after_1 = [(S1, FACT)]
    assert examples[0].source == action_prompt(render_state(question, []))
    assert examples[1].source == decompose_prompt(render_state(question, []))
    assert examples[2].source == action_prompt(render_state(question, [], S1))
    assert examples[3].source == action_prompt(render_state(question, after_1))
    assert examples[4].source == final_answer_prompt(render_state(question, after_1))
    assert examples[5].source == final_answer_prompt(render_state(question, []))
    assert [step.how for step in align_steps(two_step())] == ["overlap", "final"]


def test_no_training_state_holds_the_gold_answer():
    # The label leak the review found: a last answer line equal to the target teaches FinalAnswer to
    # copy it. Every question here ends on a fact-less yes/no step, with either answer.
    questions = [
        StrategyQuestion(str(i), f"Is thing {i} older than thing {i + 1}?", i % 2 == 0,
                         [f"When was thing {i} made?", f"When was thing {i + 1} made?", "Is #1 before #2?"],
                         [f"Thing {i} was made in {1900 + i}.", f"Thing {i + 1} was made in {1950 + i}."],
                         [[[[f"T{i}-0"]], [[f"T{i}-1"]], OP]] * 3)
        for i in range(6)
    ]
    examples = core_examples(questions) + core_examples(questions, with_decomposition=False)
    assert examples
    for example in examples:
        answer_lines = [line.split(": ", 1)[1] for line in example.source.splitlines() if re.match(r"A\d+: ", line)]
        assert not {"yes", "no"} & set(answer_lines), example.source
        if example.task not in ("final_answer", "action"):
            assert example.target not in ("yes", "no") and " A: yes" not in example.target and " A: no" not in example.target


def test_core_examples_without_decomposition():
    examples = core_examples([two_step()], with_decomposition=False)
    question = "Did Aristotle use a laptop?"
    assert [(e.task, e.target) for e in examples] == [
        ("action", "retrieve"),
        ("final_answer", "no"),
        ("final_answer", "no"),
    ]
    assert examples[0].source == action_prompt(render_state(question, [], question))
    assert examples[1].source == final_answer_prompt(render_state(question, [(question, FACT)]))


def test_alignment_uses_references_order_and_placeholders():
    facts = ["Mars has two moons.", "The Earth has one moon.", "Two is more than one."]
    steps = [
        "How many moons does the Earth have?",
        "What is #1 plus one?",
        "How many moons does Mars have?",
        "Is #3 more than #1?",
    ]
    evidence = [[[["Earth-1"]], OP, [["Mars-1"]], OP]] * 3
    question = StrategyQuestion("m", "Does Mars have more moons than Earth?", True, steps, facts, evidence)
    aligned = align_steps(question)
    # Retrieve steps first (step 3 takes the Mars fact), then reason steps: step 4's "#3" and "#1" are
    # replaced by the aligned facts and meet fact 3; step 2 finds no fact left → placeholder.
    assert [(s.answer, s.how) for s in aligned] == [
        (facts[1], "overlap"),
        (PLACEHOLDER, "placeholder"),
        (facts[0], "overlap"),
        (facts[2], "overlap"),
    ]
    examples = core_examples([question])
    # The placeholder is in states and plans but never a target.
    assert all(e.target != PLACEHOLDER for e in examples)
    assert any(f"A2: {PLACEHOLDER}" in e.source for e in examples)
    assert [e.target for e in examples if e.task == "self_answer"] == [facts[2]]
    stats = alignment_stats([question])
    assert stats["steps"] == 4 and stats["with_fact"] == 3 and stats["fraction_retrieve_with_fact"] == 1.0


def test_unlabelled_and_undecomposed_questions():
    bare = StrategyQuestion("b", "Is water wet?", True, [], [], [])
    unlabelled = StrategyQuestion("u", "Is fire cold?", None, ["s"], ["f"], [])
    examples = core_examples([bare, unlabelled])
    assert examples == [
        TextExample("final_answer", final_answer_prompt(render_state("Is water wet?", [])), "yes")
    ]


def test_extractor_examples_hold_the_gold_passage():
    questions = read_questions(SAMPLE_QUESTIONS)
    passages = {p.id: p for p in read_corpus(SAMPLE_CORPUS)}
    stats: Counter[str] = Counter()
    examples = extractor_examples(questions, passages, stats=stats)
    retrieve_steps = sum(kind == "retrieve" for q in questions for kind in step_kinds(q))
    assert len(examples) == stats["examples"] == retrieve_steps == stats["retrieve_steps"]
    assert {e.task for e in examples} == {"extract"}
    first = examples[0]  # Aristotle, step 1: gold Aristotle-0
    assert passages["Aristotle-0"].text in first.source
    assert first.target == "Aristotle lived from 384 BC to 322 BC."
    assert first.source.startswith(extract_prompt("When did Aristotle live?", "", [])[: -len("\nFact:")])
    for example in examples:
        assert 2 <= example.source.count("\n[") <= 5  # gold (≤ 3) + distractors (≤ 2)
    # Deterministic for a seed; the '#k' of a sub-question is resolved with the aligned answers.
    assert extractor_examples(questions, passages, stats=None) == examples
    resolved = [e for e in examples if "Can an object as wide as The Great Wall is mostly" in e.source]
    assert len(resolved) == 1 and "#1" not in resolved[0].source


def test_extractor_skips_steps_without_passages():
    question = two_step()
    stats: Counter[str] = Counter()
    assert extractor_examples([question], {"Other-0": Passage("Other-0", "Other", "text")}, stats=stats) == []
    assert stats == Counter({"retrieve_steps": 1, "no_passages": 1})
    gold = Passage("Aristotle-0", "Aristotle", "Aristotle was a Greek philosopher (384–322 BC).")
    examples = extractor_examples([question], {"Aristotle-0": gold}, with_decomposition=False)
    assert [(e.target, gold.text in e.source) for e in examples] == [(FACT, True)]
    assert "Question: Did Aristotle use a laptop?" in examples[0].source


def test_example_counts_list_every_task():
    counts = example_counts(core_examples([two_step()]))
    assert counts == {
        "action": 3,
        "decompose": 1,
        "self_answer": 0,
        "extract": 0,
        "final_answer": 2,
        "total": 6,
    }


# ------------------------------------------------------------------------------ conversion script
def run_script(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_strategyqa_corpus.py"), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_build_corpus_script(tmp_path):
    source = tmp_path / "sentences.json"
    source.write_text(
        json.dumps(
            {
                "Owl-1": {
                    "title": "Owl",
                    "sentences": ["Owls hunt at night.", "  They  fly quietly. "],
                    "source_splits": ["train"],
                },
                "Owl-2": {"title": "Owl", "sentences": ["Owls eat mice."], "source_splits": ["dev", "test"]},
                "Empty-0": {"title": "Empty", "sentences": ["  "], "source_splits": ["dev"]},
            }
        ),
        encoding="utf-8",
    )
    out = tmp_path / "corpus.jsonl"
    result = run_script(source, out)
    assert result.returncode == 0, result.stderr
    assert "2 passages, 1 titles" in result.stdout and "1 empty" in result.stdout
    assert read_corpus(out) == [
        Passage("Owl-1", "Owl", "Owls hunt at night. They fly quietly."),
        Passage("Owl-2", "Owl", "Owls eat mice."),
    ]

    source.write_text(json.dumps({"Owl-1": {"title": "Owl", "sentences": "not a list"}}), encoding="utf-8")
    result = run_script(source, tmp_path / "other.jsonl")
    assert result.returncode == 2 and "Owl-1" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "other.jsonl").exists()
    result = run_script(source, tmp_path / "no-such-folder" / "x.jsonl")
    assert result.returncode == 2 and "does not exist" in result.stderr
