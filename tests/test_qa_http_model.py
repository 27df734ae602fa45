"""`OpenAICompatibleModel` against a real local HTTP server faking ``/v1/completions``
(`tests/fake_openai_server.py`): generation, both scoring modes, retries, timeouts, bounded
concurrency and malformed replies."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterator

import pytest
from fake_openai_server import FakeOpenAIServer

from knowledge_qa.errors import BackendError, QAInputError
from knowledge_qa.models.http_model import OpenAICompatibleModel, normalise_base_url

INF = -math.inf


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    """A fresh fake server per test, so request counts and knobs never leak between tests."""
    with FakeOpenAIServer() as fake:
        yield fake


def make_model(server: FakeOpenAIServer, **kwargs: object) -> OpenAICompatibleModel:
    """A model with test-sized timing defaults: failures must show up in milliseconds, not seconds."""
    settings: dict[str, object] = {"timeout": 5.0, "max_retries": 2, "backoff": 0.01}
    settings.update(kwargs)
    return OpenAICompatibleModel(server.url, "fake-model", **settings)  # type: ignore[arg-type]


def free_port() -> int:
    """A port with nothing listening: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------- generation


def test_generate_keeps_prompt_order_under_concurrency(server: FakeOpenAIServer) -> None:
    words = [f"w{i}x{'y' * i}" for i in range(10)]
    # Earlier prompts answer later, so completion order is the reverse of prompt order.
    server.delay_for = lambda payload: 0.01 * (10 - int(payload["prompt"].split("w")[-1].split("x")[0]))
    with make_model(server, max_concurrency=5) as model:
        result = model.generate([f"Q: {word}" for word in words], max_new_tokens=7)
    assert result == [[word[::-1]] for word in words]
    assert server.request_count == 10
    first = server.payloads[0]
    assert first["model"] == "fake-model" and first["max_tokens"] == 7
    assert first["temperature"] == 0.0 and first["n"] == 1


def test_generate_candidates_are_stripped_sorted_and_deduplicated(server: FakeOpenAIServer) -> None:
    # The fake sends choices in reverse index order, and choices 0 and 1 are identical.
    with make_model(server, temperature=0.7) as model:
        result = model.generate(["Q: olleh", "Q: dlrow"], num_candidates=4)
    assert result == [["hello", "hello 2", "hello 3"], ["world", "world 2", "world 3"]]
    assert all(payload["n"] == 4 and payload["temperature"] == 0.7 for payload in server.payloads)


def test_servers_that_ignore_n_are_topped_up_with_single_requests(server: FakeOpenAIServer) -> None:
    """`transformers serve`, llama.cpp's server and TGI answer one choice whatever ``n`` asks; the
    client then asks for the missing candidates one request each (same prompt and temperature), so
    exploration still gets ``n`` samples. No extra request at temperature 0, nor to a server that
    honours ``n``, even when its choices repeat."""
    count = iter(range(100))
    server.responder = lambda payload: f" sample {next(count)}"
    server.ignore_n = True
    with make_model(server, exploration_temperature=0.9) as model:
        result = model.generate(["Q: a", "Q: b"], num_candidates=3)
    assert [len(set(candidates)) for candidates in result] == [3, 3]
    assert sorted(c for candidates in result for c in candidates) == sorted(f"sample {i}" for i in range(6))
    assert server.request_count == 6
    first_round, top_up = server.payloads[:2], server.payloads[2:]
    assert all(p["n"] == 3 for p in first_round) and all(p["n"] == 1 for p in top_up)
    assert all(p["temperature"] == 0.9 for p in server.payloads)
    assert sorted(p["prompt"] for p in top_up) == ["Q: a", "Q: a", "Q: b", "Q: b"]

    server.responder = None
    before = server.request_count
    with make_model(server) as model:  # greedy: more requests would repeat the same text
        assert model.generate(["Q: olleh"], num_candidates=2) == [["hello"]]
    assert server.request_count - before == 1

    server.ignore_n = False
    before = server.request_count
    with make_model(server, temperature=0.7) as model:
        assert model.generate(["Q: olleh"], num_candidates=2) == [["hello"]]
    assert server.request_count - before == 1


def test_base_url_with_v1_and_trailing_slash(server: FakeOpenAIServer) -> None:
    with OpenAICompatibleModel(server.url + "/v1/", "fake-model") as model:
        assert model.url == server.url + "/v1/completions"
        assert model.describe() == f"openai-compatible {server.url} model=fake-model"
        assert model.generate(["Q: cba"]) == [["abc"]]
    assert normalise_base_url("http://h:8000/") == "http://h:8000"
    assert normalise_base_url("https://h/api/v1") == "https://h/api"


def test_api_key_from_argument_or_environment(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    with make_model(server) as model:
        model.generate(["Q: a"])
    with make_model(server, api_key="explicit") as model:
        model.generate(["Q: a"])
    monkeypatch.delenv("OPENAI_API_KEY")
    with make_model(server) as model:
        model.generate(["Q: a"])
    auth = [{k.lower(): v for k, v in headers.items()}.get("authorization") for headers in server.headers]
    assert auth == ["Bearer from-env", "Bearer explicit", None]


def test_empty_inputs_send_nothing(server: FakeOpenAIServer) -> None:
    with make_model(server) as model:
        assert model.generate([]) == []
        assert model.score([], ["yes"]) == []
        assert model.score(["Q: a", "Q: b"], []) == [[], []]
    assert server.request_count == 0


# ---------------------------------------------------------------------- scoring


def test_score_echo_sums_the_option_tokens(server: FakeOpenAIServer) -> None:
    prompts = ["Q: capital of France:", "Q: abc"]
    options = [" Paris", " New York", "def"]
    with make_model(server, max_concurrency=3) as model:
        scores = model.score(prompts, options)
    # Fake logprob of a token = -len(token)/10; white space belongs to the following word. An option
    # is scored as a continuation: "def" after a prompt not ending in white space is " def", the
    # string the local causal path scores (options starting with white space are kept as they are).
    expected = [
        [-0.6, -0.4 - 0.5, -0.4],  # " Paris"; " New" + " York"; " def"
        [-0.6, -0.9, -0.4],
    ]
    assert scores == [pytest.approx(row) for row in expected]
    # One request per (prompt, option), echoing prompt + option; the generated " X" is not counted.
    assert sorted(payload["prompt"] for payload in server.payloads) == sorted(
        p + (o if o.startswith(" ") else " " + o) for p in prompts for o in options
    )
    assert all(payload["echo"] is True and payload["max_tokens"] == 1 for payload in server.payloads)


def test_score_echo_without_logprobs_in_reply_names_the_problem(server: FakeOpenAIServer) -> None:
    server.ignore_echo = True
    with make_model(server) as model, pytest.raises(BackendError, match="logprobs.*score_mode='generate'"):
        model.score(["Q: a"], ["yes", "no"])


def test_score_generate_mode_matches_the_greedy_output(server: FakeOpenAIServer) -> None:
    # Outputs (last word reversed): "yes", "no", "none", "YES.", "maybe".
    prompts = ["Q: sey", "Q: on", "Q: enon", "Q: .SEY", "Q: ebyam"]
    with make_model(server, score_mode="generate") as model:
        scores = model.score(prompts, ["yes", "no"])
    assert scores == [
        [0.0, INF],
        [INF, 0.0],
        [INF, INF],  # "none" must not match "no"
        [0.0, INF],  # case-insensitive, punctuation after the option is fine
        [INF, INF],  # no option matches: the agent treats the row as malformed
    ]
    assert server.request_count == len(prompts)  # one greedy generation per prompt
    assert all(payload["temperature"] == 0.0 and payload["max_tokens"] >= 8 for payload in server.payloads)


def test_score_generate_mode_prefers_the_longest_matching_option(server: FakeOpenAIServer) -> None:
    with make_model(server, score_mode="generate") as model:
        assert model.score(["Q: kroy-wen"], ["new", "new-york"]) == [[INF, 0.0]]


# ---------------------------------------------------------------------- robustness


def test_retries_5xx_and_429_then_succeeds(server: FakeOpenAIServer) -> None:
    server.fail_statuses = [503, 429]
    with make_model(server, max_retries=3) as model:
        assert model.generate(["Q: olleh"]) == [["hello"]]
    assert server.request_count == 3


def test_gives_up_after_the_last_retry(server: FakeOpenAIServer) -> None:
    server.fail_statuses = [503] * 10
    with make_model(server, max_retries=2) as model, pytest.raises(BackendError) as caught:
        model.generate(["Q: olleh"])
    assert server.request_count == 3
    message = str(caught.value)
    assert f"{server.url}/v1/completions" in message and "fake-model" in message
    assert "after 3 tries" in message and "HTTP 503" in message


def test_client_error_is_not_retried(server: FakeOpenAIServer) -> None:
    server.fail_statuses = [400]
    with make_model(server, max_retries=3) as model, pytest.raises(BackendError, match="HTTP 400") as caught:
        model.generate(["Q: olleh"])
    assert server.request_count == 1
    assert "fake failure 400" in str(caught.value)  # the server's explanation is kept


def test_unreachable_server_fails_quickly() -> None:
    port = free_port()
    started = time.perf_counter()
    with (
        OpenAICompatibleModel(
            f"http://127.0.0.1:{port}", "m", timeout=1.0, max_retries=2, backoff=0.01
        ) as model,
        pytest.raises(BackendError) as caught,
    ):
        model.generate(["Q: a"])
    assert time.perf_counter() - started < 2.0
    message = str(caught.value)
    assert message.startswith(f"could not reach http://127.0.0.1:{port}/v1/completions")
    assert "after 3 tries" in message and "connection refused" in message.lower()


def test_timeout_is_retried_then_raised(server: FakeOpenAIServer) -> None:
    server.delay = 3.0
    started = time.perf_counter()
    with (
        make_model(server, timeout=0.15, max_retries=1) as model,
        pytest.raises(BackendError, match="timed out"),
    ):
        model.generate(["Q: a"])
    # Gave up on each try, did not wait for the server (a wide bound: a loaded machine is slow).
    assert time.perf_counter() - started < 2.5
    assert server.request_count == 2


def test_concurrency_is_bounded(server: FakeOpenAIServer) -> None:
    server.delay = 0.08
    with make_model(server, max_concurrency=2) as model:
        result = model.generate([f"Q: {i}a" for i in range(8)])
    assert result == [[f"a{i}"] for i in range(8)]
    assert 1 < server.max_in_flight <= 2


def test_malformed_json_reply(server: FakeOpenAIServer) -> None:
    server.malformed = True
    with make_model(server) as model, pytest.raises(BackendError, match="invalid JSON"):
        model.generate(["Q: a"])
    assert server.request_count == 1  # a malformed reply is not a transient failure


def test_reply_without_choices(server: FakeOpenAIServer) -> None:
    server.no_choices = True
    with make_model(server) as model, pytest.raises(BackendError, match="'choices'"):
        model.score(["Q: a"], ["yes", "no"])


def test_closed_model_refuses_requests(server: FakeOpenAIServer) -> None:
    model = make_model(server)
    model.close()
    model.close()  # idempotent
    with pytest.raises(BackendError, match="closed"):
        model.generate(["Q: a"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"score_mode": "bogus"},
        {"max_concurrency": 0},
        {"timeout": 0},
        {"max_retries": -1},
        {"backoff": -1.0},
        {"temperature": -0.5},
    ],
)
def test_bad_settings_are_input_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(QAInputError):
        OpenAICompatibleModel("http://127.0.0.1:1", "m", **kwargs)  # type: ignore[arg-type]


def test_bad_url_is_an_input_error() -> None:
    with pytest.raises(QAInputError, match="http://"):
        OpenAICompatibleModel("localhost:8000", "m")


# ---------------------------------------------------------------------- chat, stop, sampling, Retry-After


def test_chat_endpoint_sends_the_prompts_chat_form(server: FakeOpenAIServer) -> None:
    from knowledge_qa.prompts import PromptTemplate

    template = PromptTemplate("Reverse the word.", "Reversed:", (("Word: abc", "cba"),))
    prompt = template.render("Word: olleh")
    with make_model(server, endpoint="chat") as model:
        assert model.url == server.url + "/v1/chat/completions" and model.score_mode == "generate"
        assert model.generate([prompt]) == [["Reversed:"[::-1]]]  # the fake reverses the last word of the last user turn
        assert model.describe().endswith("(chat)")
    assert server.payloads[0]["messages"] == [
        {"role": "system", "content": "Reverse the word."},
        {"role": "user", "content": "Word: abc\nReversed:"},
        {"role": "assistant", "content": "cba"},
        {"role": "user", "content": "Word: olleh\nReversed:"},
    ]
    assert "prompt" not in server.payloads[0]
    with pytest.raises(QAInputError, match="chat endpoint returns no prompt log probabilities"):
        make_model(server, endpoint="chat", score_mode="echo")


def test_stop_sequences_are_sent_and_also_cut_client_side(server: FakeOpenAIServer) -> None:
    server.responder = lambda payload: "yes it is\n\nQuestion: a made-up next question"
    with make_model(server) as model:
        assert model.generate(["Q: x"], stop=["\n"]) == [["yes it is"]]
        assert server.payloads[-1]["stop"] == ["\n"]
        server.ignore_stop = True  # a server that ignores stop: the client cuts
        assert model.generate(["Q: x"], stop=["\n"]) == [["yes it is"]]
        assert model.generate(["Q: x"]) == [["yes it is\n\nQuestion: a made-up next question"]]
        assert "stop" not in server.payloads[-1]


def test_exploration_temperature_and_sampling_fields(server: FakeOpenAIServer) -> None:
    with make_model(server, exploration_temperature=0.8, sampling={"top_p": 0.9}) as model:
        model.generate(["Q: a"])
        model.generate(["Q: a"], num_candidates=3)
    single, explored = server.payloads
    assert single["temperature"] == 0.0 and explored["temperature"] == 0.8 and explored["n"] == 3
    assert single["top_p"] == explored["top_p"] == 0.9
    with pytest.raises(QAInputError, match="may not set n"):
        make_model(server, sampling={"n": 4})


def test_retry_after_is_honoured(server: FakeOpenAIServer) -> None:
    server.fail_statuses = [429]
    server.fail_headers = {"Retry-After": "0.4"}
    with make_model(server, backoff=0.001) as model:
        assert model.generate(["Q: cba"]) == [["abc"]]
    first, second = server.request_times
    assert second - first >= 0.4  # not the 1 ms backoff


def test_backoff_is_exponential_with_jitter_and_retry_after_is_a_floor(server: FakeOpenAIServer, monkeypatch) -> None:
    """Waits before retries k = 1, 2, 3: backoff · 2^(k−1) · U(0.5, 1.5), so clients that failed
    together do not come back together; a Retry-After larger than that wait replaces it."""
    import types

    import knowledge_qa.models.http_model as http_model

    draws = iter([0.5, 1.5, 1.0])
    waits: list[float] = []
    # the module's own view of `random` and `time` (patching the modules would reach other threads)
    monkeypatch.setattr(http_model, "random", types.SimpleNamespace(uniform=lambda low, high: (low, high) == (0.5, 1.5) and next(draws)))
    monkeypatch.setattr(http_model, "time", types.SimpleNamespace(sleep=waits.append, time=time.time))
    server.fail_statuses = [503, 503, 429]
    server.fail_headers = {"Retry-After": "3"}
    with make_model(server, backoff=1.0, max_retries=3) as model:
        assert model.generate(["Q: cba"]) == [["abc"]]
    assert waits == [3.0, 3.0, 4.0]  # max(Retry-After 3, 1·0.5), max(3, 2·1.5), max(3, 4·1.0)
    waits.clear()
    draws = iter([0.5, 1.5])
    server.fail_statuses, server.fail_headers = [503, 503], {}
    with make_model(server, backoff=1.0, max_retries=3) as model:
        assert model.generate(["Q: cba"]) == [["abc"]]
    assert waits == [0.5, 3.0]  # 1·0.5, then 2·1.5: the jitter, no Retry-After


def test_retry_after_header_forms() -> None:
    import email.utils

    from knowledge_qa.models.http_model import retry_after_seconds

    assert retry_after_seconds("3") == 3.0 and retry_after_seconds(None) == 0.0 and retry_after_seconds("soon") == 0.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= retry_after_seconds(later) <= 31
    assert retry_after_seconds(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0
