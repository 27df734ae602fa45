"""`knowledge-qa index / ask / evaluate / train` end to end on our sample corpus and questions, with
tiny random models: outputs, resumable traces, ablation switches, and bad input (one clear line,
exit 2, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from knowledge_qa.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
CORPUS = DATA / "qa_corpus.jsonl"
QUESTIONS = DATA / "qa_questions.json"


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("qa") / "index"
    assert main(["index", str(CORPUS), "--output", str(folder)]) == 0
    return folder


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_index_and_bad_corpora(tmp_path, capsys, index):
    assert json.loads((index / "retriever.json").read_text())["kind"] == "bm25"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "title": "A", "text": "fine"}\n{"id": "b", "title": "B"\n')
    code, _, err = run_cli(capsys, "index", bad, "--output", tmp_path / "i")
    assert code == 2 and f"{bad}:2: bad JSON" in err and "Traceback" not in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    code, _, err = run_cli(capsys, "index", empty, "--output", tmp_path / "i")
    assert code == 2 and "the corpus is empty" in err
    assert not (tmp_path / "i").exists() and not list(tmp_path.glob(".i*"))  # nothing half-written, no work folder left


def test_ask_prints_a_trace(capsys, index, tiny_text_model_dirs):
    core = tiny_text_model_dirs["seq2seq"]
    code, out, _ = run_cli(capsys, "ask", "Did Aristotle use a laptop?", "--core", core, "--index", index, "--branches", "2")
    assert code == 0
    assert out.startswith("Q: Did Aristotle use a laptop?\nAnswer: ")
    assert "-- branch 1:" in out and "FinalAnswer" in out
    code, out, _ = run_cli(capsys, "ask", "Did Aristotle use a laptop?", "--core", core, "--no-retrieval", "--json")
    trace = json.loads(out)
    assert code == 0 and trace["prediction"] in ("yes", "no") and trace["retrieval_calls"] == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ask", "q?", "--core", "CORE"], "retrieval needs an index: --index FOLDER"),
        (["ask", "q?", "--no-retrieval"], "no model: give --core MODEL"),
        (["ask", "q?", "--index", "/nonexistent/index", "--core", "CORE"], "/nonexistent/index"),
        (["ask", "   ", "--core", "CORE", "--no-retrieval"], "the question is empty"),
        (["ask", "q?", "--core", "/nonexistent/model", "--no-retrieval"], "/nonexistent/model"),
        (["ask", "q?", "--server", "http://127.0.0.1:9", "--no-retrieval"], "--server needs --server-model"),
        (["ask", "q?", "--core", "CORE", "--no-retrieval", "--extractor-lexical-weight", "0.2"],
         "--extractor-hint and --extractor-lexical-weight apply to --sentence-extractor only"),
        (["evaluate", "--questions", "/nonexistent.json", "--traces", "t.jsonl", "--core", "CORE", "--no-retrieval"], "/nonexistent.json"),
    ],
)
def test_user_mistakes_exit_2(argv, message, capsys, tiny_text_model_dirs):
    argv = [str(tiny_text_model_dirs["seq2seq"]) if a == "CORE" else a for a in argv]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_unreachable_server_is_a_clear_error(capsys):
    code, _, err = run_cli(
        capsys, "ask", "q?", "--server", "http://127.0.0.1:9", "--server-model", "m", "--no-retrieval", "--timeout", "0.5"
    )
    assert code == 2 and "http://127.0.0.1:9" in err and "Traceback" not in err


def test_evaluate_is_resumable(tmp_path, capsys, index, tiny_text_model_dirs):
    traces = tmp_path / "traces.jsonl"
    argv = ["evaluate", "--questions", QUESTIONS, "--traces", traces, "--core", tiny_text_model_dirs["seq2seq"],
            "--index", index, "--limit", "4", "--batch-size", "2", "--branches", "2"]
    code, out, _ = run_cli(capsys, *argv, "--summary", tmp_path / "summary.json")
    summary = json.loads(out)
    assert code == 0 and summary["questions"] == 4 and summary["labelled"] == 4
    assert json.loads((tmp_path / "summary.json").read_text())["accuracy"] == summary["accuracy"]
    lines = traces.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 4 and all(r["gold"] in ("yes", "no") and r["correct"] == (r["gold"] == r["prediction"]) for r in records)
    assert summary["accuracy"] == sum(r["correct"] for r in records) / 4
    # An interrupted run: the last line is torn. The rerun drops it, redoes that question only.
    traces.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])
    code, out, _ = run_cli(capsys, *argv)
    again = [json.loads(line) for line in traces.read_text().splitlines()]
    assert code == 0 and [r["qid"] for r in again] == [r["qid"] for r in records]
    assert json.loads(out)["accuracy"] == summary["accuracy"]
    # A finished run is not redone: the file stays byte-identical.
    before = traces.read_bytes()
    assert run_cli(capsys, *argv)[0] == 0 and traces.read_bytes() == before
    # Other settings on the same trace file are refused.
    code, _, err = run_cli(capsys, *argv, "--no-exploration")
    assert code == 2 and "other settings (exploration)" in err


def test_ablation_switches_reach_the_traces(tmp_path, capsys, index, tiny_text_model_dirs):
    traces = tmp_path / "t.jsonl"
    code, out, _ = run_cli(capsys, "evaluate", "--questions", QUESTIONS, "--traces", traces, "--limit", "3",
                           "--core", tiny_text_model_dirs["causal"], "--no-retrieval", "--no-decomposition", "--no-exploration")
    summary = json.loads(out)
    assert code == 0
    assert summary["actions_per_question"]["RetrieveExtract"] == 0 and summary["actions_per_question"]["AddDecomp"] == 0
    assert summary["branches_per_question"] == 1
    assert summary["settings"]["retrieval"] is False


def test_python_m_evaluate(tmp_path, index, tiny_text_model_dirs):
    result = subprocess.run(
        [sys.executable, "-m", "knowledge_qa.evaluate", "--questions", str(QUESTIONS), "--traces", str(tmp_path / "t.jsonl"),
         "--core", str(tiny_text_model_dirs["seq2seq"]), "--index", str(index), "--limit", "2", "--no-exploration"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["questions"] == 2


def test_train_then_ask(tmp_path, capsys, index, tiny_text_model_dirs):
    output = tmp_path / "geek"
    code, out, _ = run_cli(capsys, "train", "--questions", QUESTIONS, "--corpus", CORPUS, "--base", tiny_text_model_dirs["seq2seq"],
                           "--output", output, "--epochs", "1", "--max-examples-per-task", "6", "--adapter-options", "r=4")
    assert code == 0, out
    for role in ("core", "extractor"):
        assert (output / role / "adapter_config.json").is_file() and (output / role / "adapter_model.safetensors").is_file()
    code, out, _ = run_cli(capsys, "ask", "Did Aristotle use a laptop?", "--core", output / "core", "--extractor", output / "extractor",
                           "--index", index, "--no-exploration")
    assert code == 0 and "Answer: " in out
    code, _, err = run_cli(capsys, "train", "--questions", QUESTIONS, "--base", tiny_text_model_dirs["seq2seq"], "--output", output,
                           "--adapter", "lora", "--adapter-options", "rank=4", "--role", "core")
    assert code == 2 and "lora has no field rank" in err


def test_train_an_answerer_and_use_it(tmp_path, capsys, tiny_text_model_dirs):
    output = tmp_path / "answerer"
    code, out, _ = run_cli(capsys, "train", "--questions", QUESTIONS, "--base", tiny_text_model_dirs["seq2seq"], "--output", output,
                           "--role", "core", "--tasks", "final_answer", "--epochs", "1", "--adapter-options", "r=2")
    # 3 per sample question: after its decomposition, after the undecomposed trajectory, and the bare question
    assert code == 0 and '"final_answer": 42, "total": 42' in out
    summary = json.loads((output / "core" / "training_summary.json").read_text())
    assert summary["examples_by_task"] == {"final_answer": 42}
    code, out, _ = run_cli(capsys, "ask", "Did Aristotle use a laptop?", "--core", tiny_text_model_dirs["seq2seq"],
                           "--answerer", output / "core", "--no-retrieval", "--json")
    assert code == 0 and json.loads(out)["prediction"] in ("yes", "no")
    code, _, err = run_cli(capsys, "train", "--questions", QUESTIONS, "--base", "x", "--output", output, "--tasks", "answers")
    assert code == 2 and "unknown --tasks answers" in err


def test_index_dense_approximate_from_the_command_line(tmp_path, capsys, tiny_encoder):
    output = tmp_path / "ann-index"
    code, out, _ = run_cli(capsys, "index", CORPUS, "--output", output, "--kind", "dense", "--encoder", tiny_encoder,
                           "--index-type", "hnsw", "--ef-search", "16")
    assert code == 0 and f"→ {output}" in out
    settings = json.loads((output / "retriever.json").read_text())
    assert settings["ann"]["index_type"] == "hnsw" and settings["ann"]["ef_search"] == 16 and (output / "ann.faiss").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann-index"]  # the encoding work folder is gone
    code, _, err = run_cli(capsys, "index", CORPUS, "--output", tmp_path / "b", "--index-type", "ivf-pq")
    assert code == 2 and "--index-type is for dense indexes" in err
