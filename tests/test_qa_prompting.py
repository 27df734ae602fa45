"""The prompting mode for LLMs that were never fine-tuned: prompt templates (completion and chat
forms, files overriding them), and the whole agent driven over HTTP by a scripted "LLM" that follows
the few-shot format, on both endpoints; per-question errors in `evaluate`, retried on resume."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_openai_server import FakeOpenAIServer

from knowledge_qa.cli import main
from knowledge_qa.corpus import read_corpus
from knowledge_qa.few_shot import FEW_SHOT
from knowledge_qa.prompts import FINE_TUNED, PromptTemplate, load_prompt_set

DATA = Path(__file__).resolve().parents[1] / "data"
RAMBLE = "\n\nQuestion: Is this a made-up next question?\nFinal answer: yes"


def test_template_forms_by_hand():
    template = PromptTemplate("Say it.", "Answer:", (("Q: one", "1"), ("Q: two", "2")))
    prompt = template.render("Q: three")
    assert prompt == "Say it.\n\nQ: one\nAnswer: 1\n\nQ: two\nAnswer: 2\n\nQ: three\nAnswer:"
    assert [m["role"] for m in prompt.messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert prompt.messages[-1] == {"role": "user", "content": "Q: three\nAnswer:"}
    bare = FINE_TUNED["action"].render("Question: x?")
    assert bare == "Question: x?\nNext action:" and bare.messages == [{"role": "user", "content": bare}]
    assert FEW_SHOT["final_answer"].cue == FINE_TUNED["final_answer"].cue  # parsed and scored alike


def test_prompt_files_override_tasks_and_bad_files_say_why(tmp_path, capsys):
    good = tmp_path / "prompts.json"
    assert main(["prompts", "--write", str(good)]) == 0  # the few-shot set, as JSON
    data = json.loads(good.read_text())
    data["final_answer"]["instruction"] = "Yes or no?"
    good.write_text(json.dumps({"final_answer": data["final_answer"]}))
    prompts = load_prompt_set(good)
    assert prompts["final_answer"].instruction == "Yes or no?" and prompts["final_answer"].examples == FEW_SHOT["final_answer"].examples
    assert prompts["action"] == FINE_TUNED["action"]  # tasks the file does not name keep the base set's
    for content, message in [
        ("{", "not valid JSON"),
        ('{"answer": {}}', "unknown task 'answer'"),
        ('{"decompose": {"examples": [["only input"]]}}', "decompose.examples must be a list of [input, output]"),
        ('{"decompose": {"stop": [""]}}', "decompose.stop must be a list of non-empty strings"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        code = main(["prompts", "--prompts", str(bad)])
        err = capsys.readouterr().err
        assert code == 2 and message in err and str(bad) in err and "Traceback" not in err


def scripted_llm(payload: dict) -> str:
    """Follows the few-shot format: reads the last input and its cue, answers like the examples, and
    rambles on past the answer as base models do (the stop sequence must cut it)."""
    if "messages" in payload:
        assert payload["messages"][0]["role"] == "system" and len(payload["messages"]) >= 4  # instruction + examples
        text = payload["messages"][-1]["content"]
    else:
        assert payload["prompt"].count("\n\n") >= 2  # instruction and examples precede the input
        text = payload["prompt"].split("\n\n")[-1]
    cue = text.rsplit("\n", 1)[-1]
    answered = len(re.findall(r"^A\d+:", text, re.MULTILINE))
    open_question = len(re.findall(r"^Q\d+:", text, re.MULTILINE)) > answered
    if cue == "Next action:":
        answer = ("retrieve" if answered == 0 else "self answer") if open_question else ("final answer" if answered >= 2 else "decompose")
    elif cue == "Plan:":
        answer = "Q: When did Aristotle live? A: 4th century BC Q: Were laptops made before #1? A: no"
    elif cue == "Fact:":
        passage = text.split("Passages:\n", 1)[1].split("\n")[0]
        answer = re.sub(r"^\[[^]]*\] ", "", passage).split(". ")[0] + "."
    elif cue == "Answer:":
        answer = "No, laptops came about 2,300 years later."
    elif cue == "Final answer:":
        answer = "no"
    else:
        raise AssertionError(f"unexpected cue {cue!r}")
    return " " + answer + RAMBLE


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        fake.responder = scripted_llm
        yield fake


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("prompting") / "index"
    assert main(["index", str(DATA / "qa_corpus.jsonl"), "--output", str(folder)]) == 0
    return folder


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_the_agent_runs_on_a_prompted_llm(endpoint, server, index, capsys):
    code = main(["ask", "Did Aristotle use a laptop?", "--server", server.url, "--server-model", "llm", "--endpoint", endpoint,
                 "--score-mode", "generate", "--prompts", "few-shot", "--index", str(index), "--no-exploration", "--json",
                 "--server-answerer-model", "judge"])
    out = capsys.readouterr().out
    assert code == 0, out
    trace = json.loads(out)
    steps = trace["branches"][0]["steps"]
    assert [s["action"] for s in steps] == ["AddDecomp", "RetrieveExtract", "AddDecomp", "SelfAnswer", "FinalAnswer"]
    assert steps[0]["sub_question"] == "When did Aristotle live?" and steps[0]["hint"] == "4th century BC"
    first_passage = next(p for p in read_corpus(DATA / "qa_corpus.jsonl") if p.id == steps[1]["passages"][0]["id"])
    assert first_passage.text.startswith(steps[1]["output"][:-1])  # the LLM's fact: the top passage's first sentence
    assert steps[3]["output"] == "No, laptops came about 2,300 years later."
    assert trace["prediction"] == "no"
    judged = [p for p in server.payloads if p["model"] == "judge"]  # FinalAnswer went to the answerer model
    assert len(judged) == 1 and "Final answer:" in json.dumps(judged[0])
    assert "made-up" not in out  # every answer ended at the stop sequence
    generation = [p for p in server.payloads if p["max_tokens"] > 1 and p.get("n", 1) == 1 and "stop" in p]
    assert generation and all(p["stop"] == ["\n"] for p in generation)


def test_the_agent_explores_and_scores_by_echo_over_http(server, index, capsys):
    """The completions endpoint's default scoring (echo: the server's log-probabilities of each option
    after the prompt) and exploration (AddDecomp asks for n plans at a temperature) through the
    whole agent. The fake server's echo log-probability of a token is −len/10, so " no" (−0.3) beats
    " yes" (−0.4). Its n plans differ only after their first sub-question, and only distinct first
    sub-questions open branches, so one branch runs."""
    code = main(["ask", "Did Aristotle use a laptop?", "--server", server.url, "--server-model", "llm", "--prompts", "few-shot",
                 "--index", str(index), "--branches", "3", "--exploration-temperature", "0.7", "--max-steps", "6", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    trace = json.loads(out)
    assert trace["prediction"] == "no"
    assert len(trace["branches"]) == 1 and trace["branches"][0]["steps"][-1]["action"] == "FinalAnswer"
    assert trace["branches"][0]["margin"] == pytest.approx(-0.1)  # log p(" yes") − log p(" no") = −0.4 − (−0.3)
    echo = [p for p in server.payloads if p.get("echo")]
    assert echo and all(p["max_tokens"] == 1 and p["logprobs"] == 1 for p in echo)
    plans = [p for p in server.payloads if p.get("n", 1) == 3]
    assert plans and all(p["temperature"] == 0.7 for p in plans)


def test_evaluate_records_a_failing_question_and_retries_it_on_resume(server, index, tmp_path, capsys):
    questions = tmp_path / "questions.json"
    questions.write_text(json.dumps([
        {"qid": "a", "question": "Did Aristotle use a laptop?", "answer": False},
        {"qid": "b", "question": "Is this question far too long for the server?", "answer": True},
        {"qid": "c", "question": "Could a polar bear catch a penguin in the wild?", "answer": False},
    ]))
    server.fail_when = lambda payload: 400 if "too long" in json.dumps(payload) else None
    traces = tmp_path / "traces.jsonl"
    argv = ["evaluate", "--questions", str(questions), "--traces", str(traces), "--server", server.url, "--server-model", "llm",
            "--score-mode", "generate", "--prompts", "few-shot", "--no-retrieval", "--no-exploration", "--batch-size", "3"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["errors"] == 1 and summary["questions"] == 3 and summary["labelled"] == 2
    lines = [json.loads(line) for line in traces.read_text().splitlines()]
    failed = [r for r in lines if "error" in r]
    assert [r["qid"] for r in failed] == ["b"] and "HTTP 400" in failed[0]["error"] and failed[0]["prediction"] is None
    server.fail_when = None  # the server is fixed: a rerun answers only the failed question
    before = server.request_count
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["errors"] == 0 and summary["labelled"] == 3
    lines = [json.loads(line) for line in traces.read_text().splitlines()]
    assert [r["qid"] for r in lines] == ["a", "b", "c", "b"] and "error" not in lines[-1]
    assert server.request_count - before <= 8  # one question's calls, not three


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_exploration_over_http_opens_a_branch_per_sampled_plan_and_votes(endpoint, server, index, capsys):
    """A sampling "LLM": asked for n plans at a temperature, it returns n plans with different first
    sub-questions, so the agent opens one branch per plan (at most ``--branches``); each branch runs
    to its own FinalAnswer, and the answers are voted (2 × no against 1 × yes)."""
    firsts = ["When did Aristotle live?", "When were laptops invented?", "Who was Aristotle?", "Was Aristotle Greek?"]

    def sampling_llm(payload: dict) -> str | list[str]:
        if payload.get("n", 1) > 1:
            return [f" Q: {first} A: x Q: Did he own #1? A: no{RAMBLE}" for first in firsts]
        text = payload["messages"][-1]["content"] if "messages" in payload else payload["prompt"].split("\n\n")[-1]
        if text.endswith("Final answer:"):
            return " yes" if "Q1: When were laptops invented?" in text else " no"
        return scripted_llm(payload)

    server.responder = sampling_llm
    code = main(["ask", "Did Aristotle use a laptop?", "--server", server.url, "--server-model", "llm", "--endpoint", endpoint,
                 "--score-mode", "generate", "--prompts", "few-shot", "--index", str(index), "--branches", "3",
                 "--exploration-temperature", "0.8", "--max-steps", "6", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    trace = json.loads(out)
    assert sorted(b["steps"][0]["sub_question"] for b in trace["branches"]) == sorted(firsts[:3])
    assert all(b["steps"][-1]["action"] == "FinalAnswer" for b in trace["branches"])
    by_first = {b["steps"][0]["sub_question"]: b["answer"] for b in trace["branches"]}
    assert by_first == {"When did Aristotle live?": "no", "When were laptops invented?": "yes", "Who was Aristotle?": "no"}
    assert trace["votes"] == {"yes": 1, "no": 2} and trace["prediction"] == "no"
    sampled = [p for p in server.payloads if p.get("n", 1) > 1]
    assert sampled and all(p["temperature"] == 0.8 and p["n"] == 3 for p in sampled)
