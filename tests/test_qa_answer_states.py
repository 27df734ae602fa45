"""Silver FinalAnswer states (the real retriever and extractor over gold decompositions) and the
classifier answerer trained on them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from knowledge_qa.corpus import read_corpus
from knowledge_qa.extraction import Extractor
from knowledge_qa.models.classifier_model import ClassifierAnswerer, is_classifier_folder
from knowledge_qa.prompts import final_answer_prompt, render_state
from knowledge_qa.retrieval import build_retriever
from knowledge_qa.strategyqa import evidence_ids, read_questions
from knowledge_qa.training.answer_classifier import ClassifierOptions, train_answer_classifier
from knowledge_qa.training.answer_states import silver_final_answer_examples, silver_states

DATA = Path(__file__).resolve().parents[1] / "data"


class FirstPassageExtractor(Extractor):
    """Writes "<query> -> <ids of the passages it got>", so a test sees every request."""

    def __init__(self):
        self.requests = []

    def extract(self, requests):
        self.requests += requests
        return [f"{r.sub_question} -> {','.join(p.id for p in r.passages)}" for r in requests]


@pytest.fixture(scope="module")
def retriever():
    return build_retriever(read_corpus(DATA / "qa_corpus.jsonl"), "bm25")


def test_silver_state_of_a_decomposed_question(retriever):
    question = read_questions(DATA / "qa_questions.json")[0]  # Did Aristotle use a laptop? (answer no)
    extractor = FirstPassageExtractor()
    stats = Counter()
    (example,) = silver_final_answer_examples([question], retriever, extractor, top_k=2, stats=stats)
    hits_1 = [h.passage.id for h in retriever.search("When did Aristotle live?", 2)]
    hits_2 = [h.passage.id for h in retriever.search("When were the first portable computers sold?", 2)]
    answered = [
        ("When did Aristotle live?", f"When did Aristotle live? -> {','.join(hits_1)}"),
        ("When were the first portable computers sold?", f"When were the first portable computers sold? -> {','.join(hits_2)}"),
        ("Is #2 before #1?", question.facts[2]),  # a reason step: its aligned fact, as the core SelfAnswers
    ]
    assert example.source == final_answer_prompt(render_state("Did Aristotle use a laptop?", answered))
    assert example.target == "no" and example.task == "final_answer"
    assert stats["retrieve_steps"] == 2 and stats["reason_steps"] == 1 and stats["withheld_passages"] == 0


def test_silver_states_are_the_lines_of_the_examples_and_need_no_answer(retriever):
    """`silver_states` gives the same lines the examples render (the knowledge controls score them),
    and a question without a gold answer still gets its state."""
    questions = read_questions(DATA / "qa_questions.json")[:3]
    states = silver_states(questions, retriever, FirstPassageExtractor(), top_k=2)
    examples = silver_final_answer_examples(questions, retriever, FirstPassageExtractor(), top_k=2)
    assert [e.source for e in examples] == [
        final_answer_prompt(render_state(" ".join(q.question.split()), lines)) for q, lines in zip(questions, states)
    ]
    unanswered = questions[0].__class__(**{**vars(questions[0]), "answer": None})
    assert silver_states([unanswered], retriever, FirstPassageExtractor(), top_k=2) == states[:1]
    assert silver_final_answer_examples([unanswered], retriever, FirstPassageExtractor(), top_k=2) == []


def test_coverage_withholds_the_questions_own_evidence(retriever):
    questions = read_questions(DATA / "qa_questions.json")
    extractor = FirstPassageExtractor()
    stats = Counter()
    examples = silver_final_answer_examples(questions, retriever, extractor, coverage=0.0, stats=stats)
    assert len(examples) == len(questions) and stats["withheld_passages"] == stats["own_passages"] > 0
    by_query = {r.sub_question: {p.id for p in r.passages} for r in extractor.requests}
    for question in questions:
        for step in question.decomposition:
            if step in by_query:  # a retrieve step's query (no "#k")
                assert not by_query[step] & evidence_ids(question)
    # Every state line is a query and what came back for it: never a gold yes/no.
    assert all("\nA1: yes" not in e.source and "\nA1: no" not in e.source for e in examples)


def test_without_decomposition_the_question_is_the_query(retriever):
    question = read_questions(DATA / "qa_questions.json")[1]
    extractor = FirstPassageExtractor()
    (example,) = silver_final_answer_examples([question], retriever, extractor, with_decomposition=False)
    assert [r.sub_question for r in extractor.requests] == [question.question]
    assert example.source.count("\nA1: ") == 1 and "\nA2: " not in example.source


def test_classifier_answerer_learns_and_reloads(tmp_path, tiny_encoder):
    from knowledge_qa.training.examples import TextExample

    examples = [TextExample("final_answer", final_answer_prompt(render_state(f"Is {w} {c}?", [])), "yes" if c == "red" else "no")
                for w in ("apple", "car", "rose", "ball", "hat", "door") for c in ("red", "blue")]
    folder = train_answer_classifier(examples, tiny_encoder, tmp_path / "answerer",
                                     ClassifierOptions(epochs=30, learning_rate=3e-3, batch_size=4, warmup_ratio=0.0))
    assert is_classifier_folder(folder) and not is_classifier_folder(tmp_path)
    summary = json.loads((folder / "training_summary.json").read_text())
    assert summary["examples"] == 12 and summary["answers"] == {"yes": 6, "no": 6}
    answerer = ClassifierAnswerer.from_pretrained(folder, device="cpu")
    rows = answerer.score([e.source for e in examples], ["yes", "no", "maybe"])
    assert all(row[2] == float("-inf") for row in rows)
    assert all((row[0] > row[1]) == (e.target == "yes") for row, e in zip(rows, examples))  # learned the training set
    assert sum(pytest.approx(1.0) == (2.718281828 ** row[0] + 2.718281828 ** row[1]) for row in rows) == len(rows)
    with pytest.raises(Exception, match="classifier"):
        answerer.generate(["x"])


def test_train_an_answerer_from_the_command_line_and_ask_with_it(tmp_path, capsys, tiny_encoder, tiny_text_model_dirs):
    from knowledge_qa.cli import main

    index = tmp_path / "index"
    assert main(["index", str(DATA / "qa_corpus.jsonl"), "--output", str(index)]) == 0
    output = tmp_path / "geek"
    code = main(["train", "--role", "answerer", "--questions", str(DATA / "qa_questions.json"), "--index", str(index),
                 "--output", str(output), "--answerer-encoder", str(tiny_encoder), "--epochs", "1", "--coverage", "0.5",
                 "--max-source-tokens", "128"])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = (output / "answerer_examples.jsonl").read_text().splitlines()
    # 14 questions: their decomposed and undecomposed states (no extra questions here)
    assert len(lines) == 28 and "answerer: 28 silver FinalAnswer states" in out
    assert is_classifier_folder(output / "answerer")
    code = main(["ask", "Did Aristotle use a laptop?", "--core", str(tiny_text_model_dirs["seq2seq"]),
                 "--answerer", str(output / "answerer"), "--index", str(index), "--no-exploration", "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["prediction"] in ("yes", "no")
    code = main(["train", "--role", "answerer", "--questions", str(DATA / "qa_questions.json"), "--output", str(output)])
    assert code == 2 and "--role answerer needs --index" in capsys.readouterr().err
