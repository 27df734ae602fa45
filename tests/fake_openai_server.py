"""A real, tiny HTTP server faking OpenAI-compatible ``/v1/completions`` and ``/v1/chat/completions``
endpoints, for tests of `knowledge_qa.models.http_model` (and of anything driving the agent over HTTP).

Deterministic behaviour, so tests can compute expected values exactly:

* completion text = the prompt's last word reversed, with a leading space (servers return raw
  continuations); with ``n`` choices, choices 0 and 1 carry that text and choice ``i >= 2`` carries
  it followed by ``" {i}"``; choices are sent in *reverse* index order (clients must sort);
* echo requests: the echoed text ``prompt`` is cut into tokens by ``\\s*\\S+`` (white space sticks to
  the following word, as in GPT-style tokenisers), token logprob = ``-len(token) / 10``, except the
  first token's, which is ``None``; then one generated token ``" X"`` with logprob -5.0 follows.

Chat requests answer the last user message the same way, as ``message.content``. ``responder``
(a function of the payload returning the text) replaces the reversed-word rule for both endpoints: a
scripted "LLM"; a responder that returns a list gives one text per choice (as many as ``n``), as a
sampling server does. Like real servers, the fake cuts a text at the first of the request's ``stop``
strings, unless ``ignore_stop``.

Knobs: ``fail_statuses`` (statuses answered, one per request, before behaving; ``fail_headers`` are
sent with them, e.g. ``Retry-After``), ``fail_when(payload)`` (a status for requests it picks, every
time), ``delay`` (seconds
slept by every request) or ``delay_for(payload)``, ``ignore_echo`` (answer echo requests like plain
ones, without logprobs, as servers lacking echo support do), ``ignore_n`` (one choice whatever
``n`` asks, as `transformers serve`, llama.cpp's server and TGI answer), ``malformed`` (answer 200 with a body that is not JSON), ``no_choices``
(answer ``{}``). It records every payload and header set, and the largest number of requests handled at once.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

TOKEN = re.compile(r"\s*\S+")


def fake_completion(prompt: str) -> str:
    """The fake server's greedy completion of ``prompt``: its last word reversed."""
    words = prompt.split()
    return " " + (words[-1][::-1] if words else "")


def fake_tokens(text: str) -> list[tuple[str, int]]:
    """The fake server's tokens of ``text`` with their character offsets."""
    return [(match.group(), match.start()) for match in TOKEN.finditer(text)]


def fake_logprob(token: str) -> float:
    """The fake server's log probability of ``token`` (first tokens excepted)."""
    return -len(token) / 10


class FakeOpenAIServer:
    """Runs on 127.0.0.1 with a free port in a background thread; use as a context manager."""

    def __init__(self) -> None:
        self.fail_statuses: list[int] = []
        self.fail_headers: dict[str, str] = {}
        self.fail_when: Callable[[dict[str, Any]], int | None] | None = None
        self.responder: Callable[[dict[str, Any]], str | list[str]] | None = None
        self.ignore_stop = False
        self.request_times: list[float] = []
        self.delay = 0.0
        self.delay_for: Callable[[dict[str, Any]], float] | None = None
        self.ignore_echo = False
        self.ignore_n = False
        self.malformed = False
        self.no_choices = False
        self.payloads: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.request_count = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        # A client that gave up (timeout test) makes the late reply fail; that is expected noise.
        self._server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        """Base URL without ``/v1``, e.g. ``http://127.0.0.1:54321``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def texts_for(self, payload: dict[str, Any], base: str) -> list[str]:
        """The ``n`` choices' texts, each cut at the first stop string."""
        n = 1 if self.ignore_n else int(payload.get("n", 1))

        def cut(text: str) -> str:
            for stop in [] if self.ignore_stop else payload.get("stop") or []:
                text = text.split(stop)[0]
            return text

        text = self.responder(payload) if self.responder else base
        if isinstance(text, list):
            return [cut(t) for t in text[:n]]
        text = cut(text)
        return [text if i < 2 else f"{text} {i}" for i in range(n)]

    def chat_reply(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The JSON answer to a well-formed chat completions request."""
        last = [m["content"] for m in payload["messages"] if m["role"] == "user"][-1]
        texts = self.texts_for(payload, fake_completion(last))
        choices = [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                   for i, text in enumerate(texts)]
        return {"object": "chat.completion", "choices": choices}

    def reply(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The JSON answer to a well-formed completions request."""
        prompt = payload["prompt"]
        if payload.get("echo") and not self.ignore_echo:
            tokens = fake_tokens(prompt)
            values: list[float | None] = [None] + [fake_logprob(token) for token, _ in tokens[1:]]
            generated = " X"
            logprobs = {
                "tokens": [token for token, _ in tokens] + [generated],
                "token_logprobs": values + [-5.0],
                "text_offset": [offset for _, offset in tokens] + [len(prompt)],
                "top_logprobs": None,
            }
            return {"choices": [{"index": 0, "text": prompt + generated, "logprobs": logprobs}]}
        texts = self.texts_for(payload, fake_completion(prompt))
        choices = [{"index": i, "text": text, "logprobs": None} for i, text in enumerate(texts)]
        return {"object": "text_completion", "choices": choices[::-1]}


def _make_handler(state: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

        def _send(self, status: int, body: bytes, content_type: str = "application/json", headers=None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 - name required by BaseHTTPRequestHandler
            payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            with state.lock:
                state.request_count += 1
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                status = state.fail_statuses.pop(0) if state.fail_statuses else 200
                if status == 200 and state.fail_when is not None:
                    status = state.fail_when(payload) or 200
                state.payloads.append(payload)
                state.request_times.append(time.monotonic())
                state.headers.append(dict(self.headers))
            try:
                time.sleep(state.delay_for(payload) if state.delay_for else state.delay)
                if self.path not in ("/v1/completions", "/v1/chat/completions"):
                    status, answer = 404, b'{"error": "no such endpoint"}'
                elif status != 200:
                    answer = json.dumps({"error": {"message": f"fake failure {status}"}}).encode()
                elif state.malformed:
                    answer = b"<html>this is not json</html>"
                elif state.no_choices:
                    answer = b"{}"
                elif self.path == "/v1/chat/completions":
                    answer = json.dumps(state.chat_reply(payload)).encode()
                else:
                    answer = json.dumps(state.reply(payload)).encode()
            finally:
                # Counted out before the reply is written: once the client has its answer it may
                # send the next request, which must not overlap this one in the count.
                with state.lock:
                    state.in_flight -= 1
            self._send(status, answer, headers=state.fail_headers if status != 200 else None)

    return Handler
