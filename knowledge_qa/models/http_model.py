"""`OpenAICompatibleModel`: the agent's `TextModel` served by any server speaking the OpenAI API
(vLLM, TGI's OpenAI front end, llama.cpp server).

Two endpoints (``endpoint``):

``"completions"`` (default): ``POST /v1/completions`` with the prompt's completion form. It is the one
    endpoint that can return the log probabilities of *prompt* tokens, which exact ("echo") scoring
    needs. The OpenAI API itself no longer echoes prompt log probabilities: use ``score_mode="generate"``
    there.
``"chat"``: ``POST /v1/chat/completions`` with the prompt's chat form (`knowledge_qa.prompts.Prompt`
    ``.messages``: instruction as the system message, few-shot examples as turns); the server applies
    the served model's own chat template. Options are scored in "generate" mode.

Scoring modes (``score_mode``):

``"echo"`` (exact; the default for completions)
    For each (prompt, option) pair one request with ``prompt + " " + option`` (no space when the
    prompt already ends in white space: the same continuation the local causal path scores, so a model
    fine-tuned locally is scored on the tokens it was trained on), ``echo: true`` and ``logprobs: 1``. The server returns one log probability per token of the echoed text together
    with each token's character offset (``text_offset``); the option's score is the sum over the
    tokens that end after ``len(prompt)``, so a token straddling the prompt/option boundary counts
    as the option's (the tokeniser merged them; dropping it would score the option on a fragment).
    ``max_tokens`` is sent as 1, not 0: vLLM rejects 0 and every server accepts 1. The one generated
    token lies beyond the end of the echoed text and is left out by its offset. Costs one request
    per pair, but every option gets a real, comparable log-likelihood. Caveats: the tokens of
    ``prompt + option`` may differ from those of the prompt alone at the boundary; the first token
    of a text has no log probability (``null``), so with an empty prompt it contributes nothing.

``"generate"`` (for servers without echo / prompt log probabilities, e.g. llama.cpp, TGI)
    One greedy generation per prompt, long enough for the longest option. The option the output
    starts with (case-insensitive, after stripping, and ending at a word boundary so that option
    ``"no"`` does not match ``"none"``) scores 0.0 and every other option -inf; when several match,
    the longest wins. When none matches the whole row is -inf, which the agent treats as malformed
    output (it falls back and records it). Cheap, one request per prompt, but it yields no ranking
    among the losing options and depends on the model answering in the options' exact wording.

Generation: ``n = num_candidates`` completions per prompt are requested in one call, with the
caller's ``stop`` sequences (also cut client-side, for servers that ignore them) and ``sampling``
(extra request fields, e.g. ``{"top_p": 0.9}`` or vLLM's ``{"use_beam_search": true}``). At
temperature 0 a server returns ``n`` identical (greedy) texts, and some old vLLM versions reject
``n > 1`` with greedy sampling outright (a 400, raised as `BackendError`). Texts are stripped and
deduplicated keeping the server's order, so a prompt may get *fewer* than ``num_candidates``
continuations; ``exploration_temperature`` (used for requests with ``n > 1`` only, i.e. AddDecomp's
exploration) gets distinct ones while every other call stays greedy.

Robustness: every request has a timeout; connection errors, timeouts, HTTP 429 and 5xx are retried
``max_retries`` times (so ``max_retries + 1`` tries in all). The wait before try k is
``backoff * 2**(k-1)`` seconds times a random factor in [0.5, 1.5) (jitter: many clients that failed
together do not retry together), or the server's ``Retry-After`` (seconds or an HTTP date) when it
sends one and asks for longer, capped at ``max_retry_after``. Other 4xx replies are raised at once
(retrying a bad request cannot help), and so is a reply that is not the expected JSON shape. Requests run on a thread pool of ``max_concurrency`` workers
sharing one `httpx.Client`, so never more than ``max_concurrency`` are in flight; results are put
back in prompt order.
"""

from __future__ import annotations

import email.utils
import math
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

import httpx

from knowledge_qa.errors import BackendError, QAInputError
from knowledge_qa.models.base import TextModel, continuation, cut_at_stop
from knowledge_qa.prompts import chat_messages

SCORE_MODES = ("echo", "generate")
ENDPOINTS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}

# Generation budget in "generate" scoring mode: enough for short answers even when the model
# tokenises them into many pieces, without paying for long rambling continuations.
_MIN_SCORE_TOKENS = 8
_MAX_SCORE_TOKENS = 64

# How much of an error reply's body goes into a BackendError message: enough to show the server's
# explanation, not a whole HTML error page.
_BODY_EXCERPT = 300


def normalise_base_url(base_url: str) -> str:
    """``base_url`` without trailing slashes and without a trailing ``/v1``, so that both
    ``http://host:8000`` and ``http://host:8000/v1/`` (the form OpenAI clients expect) work."""
    url = base_url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")].rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise QAInputError(f"model server URL must start with http:// or https://, got {base_url!r}")
    return url


class OpenAICompatibleModel(TextModel):
    """A `TextModel` behind an OpenAI-compatible ``/v1/completions`` endpoint (see the module
    docstring for the scoring modes and retry policy). Use it as a context manager or call
    `close` to release the connection pool and worker threads."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_concurrency: int = 8,
        score_mode: str | None = None,
        temperature: float = 0.0,
        exploration_temperature: float | None = None,
        endpoint: str = "completions",
        sampling: dict[str, Any] | None = None,
        max_retry_after: float = 60.0,
    ) -> None:
        # Bad settings come from CLI flags: QAInputError is printed without a traceback.
        if not model:
            raise QAInputError("a model name is required for the OpenAI-compatible backend")
        if timeout <= 0:
            raise QAInputError(f"timeout must be positive, got {timeout}")
        if max_retries < 0:
            raise QAInputError(f"max_retries must be >= 0, got {max_retries}")
        if backoff < 0:
            raise QAInputError(f"backoff must be >= 0, got {backoff}")
        if max_concurrency < 1:
            raise QAInputError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if endpoint not in ENDPOINTS:
            raise QAInputError(f"endpoint must be one of {', '.join(ENDPOINTS)}, got {endpoint!r}")
        if score_mode is None:
            score_mode = "generate" if endpoint == "chat" else "echo"
        if score_mode not in SCORE_MODES:
            raise QAInputError(f"score_mode must be one of {', '.join(SCORE_MODES)}, got {score_mode!r}")
        if endpoint == "chat" and score_mode == "echo":
            raise QAInputError("the chat endpoint returns no prompt log probabilities: use score_mode 'generate' "
                               "(or the completions endpoint for echo scoring)")
        if temperature < 0 or (exploration_temperature is not None and exploration_temperature < 0):
            raise QAInputError(f"temperatures must be >= 0, got {temperature} / {exploration_temperature}")
        if max_retry_after < 0:
            raise QAInputError(f"max_retry_after must be >= 0, got {max_retry_after}")
        reserved = sorted(set(sampling or {}) & {"model", "prompt", "messages", "max_tokens", "n", "stop", "echo"})
        if reserved:
            raise QAInputError(f"sampling options may not set {', '.join(reserved)} (the agent sets them)")
        self.base_url = normalise_base_url(base_url)
        self.endpoint = endpoint
        self.url = f"{self.base_url}{ENDPOINTS[endpoint]}"
        self.model = model
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_concurrency = int(max_concurrency)
        self.score_mode = score_mode
        self.temperature = float(temperature)
        self.exploration_temperature = exploration_temperature
        self.sampling = dict(sampling or {})
        self.max_retry_after = float(max_retry_after)
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        # The pool matches the worker count: more connections could never be used, fewer would
        # make workers queue inside httpx and hit the pool timeout instead of the server's.
        limits = httpx.Limits(
            max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
        )
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(self.timeout), limits=limits)
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def describe(self) -> str:
        """One line naming the server and model, e.g. ``openai-compatible http://h:8000 model=m``."""
        chat = " (chat)" if self.endpoint == "chat" else ""
        return f"openai-compatible {self.base_url} model={self.model}{chat}"

    def close(self) -> None:
        """Stop the worker threads and close the connection pool. Idempotent."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    def __enter__(self) -> OpenAICompatibleModel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ TextModel

    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int = 64, num_candidates: int = 1, stop: Sequence[str] = ()
    ) -> list[list[str]]:
        """For each prompt, its completions (``n = num_candidates``), cut at ``stop``, stripped and
        deduplicated in the server's order; fewer than ``num_candidates`` when the server repeats
        itself (always the case at temperature 0). When sampling, a server that sends fewer choices
        than ``n`` asks is sent one single-choice request per missing candidate."""
        if max_new_tokens < 1:
            raise QAInputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if num_candidates < 1:
            raise QAInputError(f"num_candidates must be >= 1, got {num_candidates}")
        temperature = self.temperature
        if num_candidates > 1 and self.exploration_temperature is not None:
            temperature = self.exploration_temperature
        payloads = [
            {
                **self.sampling,
                **self._input(prompt),
                "max_tokens": max_new_tokens,
                "temperature": temperature,
                "n": num_candidates,
                **({"stop": list(stop)} if stop else {}),
            }
            for prompt in prompts
        ]
        texts = [_choice_texts(reply) for reply in self._post_all(payloads)]
        # Servers that ignore ``n`` (`transformers serve`, llama.cpp's server, TGI) send one choice:
        # ask for each missing candidate in a request of its own (when sampling: greedy repeats itself).
        missing = [index for index, choices in enumerate(texts) for _ in range(num_candidates - len(choices))]
        if missing and temperature > 0:
            extra = self._post_all([{**payloads[index], "n": 1} for index in missing])
            for index, reply in zip(missing, extra, strict=True):
                texts[index] += _choice_texts(reply)
        return [_dedupe([cut_at_stop(text, stop).strip() for text in choices]) for choices in texts]

    def _input(self, prompt: str) -> dict[str, Any]:
        """The model and the prompt, in the endpoint's form."""
        if self.endpoint == "chat":
            return {"model": self.model, "messages": chat_messages(prompt)}
        return {"model": self.model, "prompt": str(prompt)}

    def score(self, prompts: Sequence[str], options: Sequence[str]) -> list[list[float]]:
        """log p(option | prompt) for every prompt (rows) and option (columns); exact in ``echo``
        mode, 0.0 / -inf in ``generate`` mode (see the module docstring)."""
        if not prompts:
            return []
        if not options:
            return [[] for _ in prompts]
        if self.score_mode == "echo":
            return self._score_echo(prompts, options)
        return self._score_generate(prompts, options)

    # ------------------------------------------------------------------ scoring

    def _score_echo(self, prompts: Sequence[str], options: Sequence[str]) -> list[list[float]]:
        pairs = [(str(prompt), continuation(prompt, option)) for prompt in prompts for option in options]
        payloads = [
            {
                "model": self.model,
                "prompt": prompt + option,
                "max_tokens": 1,
                "temperature": 0.0,
                "echo": True,
                "logprobs": 1,
            }
            for prompt, option in pairs
        ]
        replies = self._post_all(payloads)
        where = f"{self.url} (model={self.model})"
        flat = [
            _option_logprob(reply, len(p), len(p) + len(o), where) for reply, (p, o) in zip(replies, pairs)
        ]
        width = len(options)
        return [flat[row * width : (row + 1) * width] for row in range(len(prompts))]

    def _score_generate(self, prompts: Sequence[str], options: Sequence[str]) -> list[list[float]]:
        # Tokens are unknown client-side; one token per two characters is a generous bound for
        # short answers, and the minimum covers options like "yes" that a model may pad or split.
        longest = max(len(option) for option in options)
        max_tokens = min(_MAX_SCORE_TOKENS, max(_MIN_SCORE_TOKENS, longest // 2 + 2))
        payloads = [
            {**self._input(prompt), "max_tokens": max_tokens, "temperature": 0.0, "n": 1, "stop": ["\n"]}
            for prompt in prompts
        ]
        replies = self._post_all(payloads)
        rows = []
        for reply in replies:
            texts = _choice_texts(reply)
            rows.append(_match_scores(texts[0] if texts else "", options))
        return rows

    # ------------------------------------------------------------------ HTTP

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise BackendError(f"{self.describe()} is closed")
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.max_concurrency, thread_name_prefix="knowledge-qa-http"
                )
            return self._executor

    def _post_all(self, payloads: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST every payload (at most ``max_concurrency`` at a time); replies in payload order.
        The first failure cancels what has not started yet and is raised."""
        if self._closed:
            raise BackendError(f"{self.describe()} is closed")
        if not payloads:
            return []
        if len(payloads) == 1:
            # No thread hop for the common single-request case.
            return [self._post(payloads[0])]
        pool = self._pool()
        futures: list[Future[dict[str, Any]]] = [pool.submit(self._post, payload) for payload in payloads]
        try:
            return [future.result() for future in futures]
        finally:
            # On an error, requests not started yet would only repeat it against a failing server.
            for future in futures:
                future.cancel()

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        """One POST with the retry policy; the decoded JSON object, or `BackendError`."""
        where = f"{self.url} (model={self.model})"
        tries = self.max_retries + 1
        cause = ""
        wait_at_least = 0.0
        for attempt in range(tries):
            if attempt:
                time.sleep(max(wait_at_least, self.backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)))
            wait_at_least = 0.0
            try:
                response = self._client.post(self.url, json=payload)
            except httpx.TimeoutException:
                cause = f"timed out after {self.timeout:g} s"
                continue
            except httpx.TransportError as error:
                cause = _describe_transport_error(error)
                continue
            status = response.status_code
            if status == 429 or status >= 500:
                cause = f"HTTP {status}: {_excerpt(response.text)}"
                wait_at_least = min(self.max_retry_after, retry_after_seconds(response.headers.get("Retry-After")))
                continue
            if status >= 400:
                raise BackendError(f"{where} answered HTTP {status}: {_excerpt(response.text)}")
            try:
                data = response.json()
            except ValueError as error:
                raise BackendError(
                    f"{where} answered with invalid JSON ({error}): {_excerpt(response.text)}"
                ) from None
            if not isinstance(data, dict):
                raise BackendError(f"{where} answered {type(data).__name__}, expected a JSON object")
            _check_choices(data, where)
            return data
        if cause.startswith("HTTP"):
            raise BackendError(f"{where} kept failing after {tries} tries: {cause}")
        raise BackendError(f"could not reach {where} after {tries} tries: {cause}")


# ---------------------------------------------------------------------- reply parsing


def retry_after_seconds(value: str | None) -> float:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date); 0 if absent or
    unreadable."""
    if not value:
        return 0.0
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, when.timestamp() - time.time())


def _describe_transport_error(error: httpx.TransportError) -> str:
    """A short cause for a connection-level failure; 'connection refused' rather than a repr."""
    text = str(error) or type(error).__name__
    if isinstance(error, httpx.ConnectError) and "refused" in text.lower():
        return "connection refused"
    return text


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _BODY_EXCERPT else text[:_BODY_EXCERPT] + "…"


def _check_choices(data: dict[str, Any], where: str) -> None:
    """Raise `BackendError` unless ``data`` has a non-empty ``choices`` list of objects, each
    with a string ``text`` (completions) or ``message.content`` (chat): the minimum every caller
    relies on. A chat reply's content is copied to ``text``; a null content (a refusal, a tool
    call) becomes ""."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise BackendError(f"{where} reply has no 'choices' list: {_excerpt(str(data))}")
    for i, choice in enumerate(choices):
        if isinstance(choice, dict) and "text" not in choice and isinstance(choice.get("message"), dict):
            content = choice["message"].get("content")
            choice["text"] = content if isinstance(content, str) else ""
        if not isinstance(choice, dict) or not isinstance(choice.get("text"), str):
            raise BackendError(f"{where} reply choice {i} has no 'text' string")


def _choice_texts(reply: dict[str, Any]) -> list[str]:
    """The stripped texts of a checked reply, ordered by their ``index`` when the server gives
    one (servers may stream choices back in completion order)."""
    choices = reply["choices"]
    if all(isinstance(choice.get("index"), int) for choice in choices):
        choices = sorted(choices, key=lambda choice: choice["index"])
    return [choice["text"].strip() for choice in choices]


def _dedupe(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def _option_logprob(reply: dict[str, Any], start: int, end: int, where: str) -> float:
    """Sum of the echoed token log probabilities of the characters ``[start, end)`` (the option),
    counting a token that straddles ``start`` as the option's."""
    logprobs = reply["choices"][0].get("logprobs")
    if not isinstance(logprobs, dict):
        raise BackendError(
            f"{where} reply has no 'logprobs' object: the server does not support echo scoring; "
            "use score_mode='generate' (--score-mode generate on the command line)"
        )
    tokens = logprobs.get("tokens")
    values = logprobs.get("token_logprobs")
    offsets = logprobs.get("text_offset")
    for name, value in (("tokens", tokens), ("token_logprobs", values), ("text_offset", offsets)):
        if not isinstance(value, list):
            raise BackendError(f"{where} reply 'logprobs' has no '{name}' list; use score_mode='generate'")
    if not len(tokens) == len(values) == len(offsets):
        raise BackendError(
            f"{where} reply 'logprobs' lists differ in length: {len(tokens)} tokens, "
            f"{len(values)} token_logprobs, {len(offsets)} text_offset"
        )
    total = 0.0
    covered = False
    for token, value, offset in zip(tokens, values, offsets):
        if not isinstance(offset, int) or not isinstance(token, str):
            raise BackendError(f"{where} reply 'logprobs' has a non-integer text_offset or non-string token")
        # Beyond the echoed text: the generated token (max_tokens=1) is not part of the option.
        if offset >= end:
            continue
        if offset + len(token) <= start:
            continue
        covered = True
        if value is None:
            # Only the very first token of a text has no conditional probability.
            continue
        total += float(value)
    if not covered and end > start:
        raise BackendError(
            f"{where} reply: no echoed token covers the option (characters {start}..{end}): "
            "the server did not echo the prompt"
        )
    return total


def _match_scores(output: str, options: Sequence[str]) -> list[float]:
    """0.0 for the longest option the greedy ``output`` starts with (at a word boundary), -inf
    for every other option; all -inf when none matches."""
    text = output.strip().casefold()
    best: int | None = None
    for i, option in enumerate(options):
        wanted = option.strip().casefold()
        if not wanted or not text.startswith(wanted):
            continue
        following = text[len(wanted) : len(wanted) + 1]
        if following.isalnum():
            continue  # "no" must not match "none".
        if best is None or len(wanted) > len(options[best].strip()):
            best = i
    return [0.0 if i == best else -math.inf for i in range(len(options))]
