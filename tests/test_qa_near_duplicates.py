"""Near-duplicate questions between training sources and held-out questions, and their removal from
every training source of `knowledge-qa train`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowledge_qa.cli import main
from knowledge_qa.near_duplicates import drop_near_duplicates, find_near_duplicates, jaccard, word_set

QUESTIONS = Path(__file__).resolve().parents[1] / "data" / "qa_questions.json"


def test_word_sets_and_jaccard_by_hand():
    assert word_set("Did Aristotle use a Laptop? Did he?") == {"did", "aristotle", "use", "a", "laptop", "he"}
    # {are, most, reddit, users, familiar} vs {are, the, majority, of, reddit, users, familiar}: 4 shared of 8
    assert jaccard(word_set("Are most Reddit users familiar?"), word_set("Are the majority of Reddit users familiar?")) == 4 / 8
    assert jaccard(frozenset(), frozenset()) == 0.0


def test_find_near_duplicates_keeps_the_best_match_and_the_threshold():
    held_out = ["Did Aristotle use a laptop?", "Is a whale a fish?"]
    texts = [
        "Did Aristotle ever use a laptop?",  # 5 of 6 words shared with held-out 0 → 5/6
        "Is a dolphin a fish?",  # {is, a, dolphin, fish} vs {is, a, whale, fish}: 3/5
        "Was Rome founded in 753 BC?",  # nothing shared
        "is a WHALE a fish",  # the same words: 1.0
    ]
    found = find_near_duplicates(texts, held_out, threshold=0.6)
    assert [(d.index, d.held_out_index, d.similarity) for d in found] == [(0, 0, 5 / 6), (1, 1, 3 / 5), (3, 1, 1.0)]
    assert [d.index for d in find_near_duplicates(texts, held_out, threshold=0.7)] == [0, 3]
    kept, dropped = drop_near_duplicates(["a", "b", "c", "d"], texts, held_out, threshold=0.7)
    assert kept == ["b", "c"] and len(dropped) == 2
    with pytest.raises(ValueError, match="threshold"):
        find_near_duplicates(texts, held_out, threshold=0.0)


def test_train_removes_held_out_paraphrases_from_every_source(tmp_path, capsys, tiny_text_model_dirs):
    held_out = tmp_path / "dev.json"
    held_out.write_text(json.dumps([{"qid": "d1", "question": "Did Aristotle ever use a laptop computer?", "answer": False}]))
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps([
        {"qid": "e1", "question": "Did the philosopher Aristotle use a laptop?", "answer": False},  # 5/8 with d1
        {"qid": "e2", "question": "Is the Moon made of cheese?", "answer": False},
    ]))
    output = tmp_path / "answerer"
    code = main([str(a) for a in ("train", "--questions", QUESTIONS, "--extra-questions", extra, "--held-out", held_out,
                                  "--base", tiny_text_model_dirs["seq2seq"], "--output", output, "--role", "core",
                                  "--tasks", "final_answer", "--epochs", "1", "--max-examples-per-task", "1",
                                  "--adapter-options", "r=2")])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads((output / "training_data.json").read_text())
    by_source = report["sources"]
    # "Did Aristotle use a laptop?" (train) shares 5 of 7 words with d1; e1 shares 5 of 8.
    assert by_source[str(QUESTIONS)]["removed"] == 1 and by_source[str(extra)]["removed"] == 1
    assert [p["train"] for p in by_source[str(extra)]["pairs"]] == ["Did the philosopher Aristotle use a laptop?"]
    assert "removed 1 of 14 questions" in out and "removed 1 of 2 questions" in out
