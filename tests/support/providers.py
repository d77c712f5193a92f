"""Real HTTP fakes of remote AI providers, for tests and benchmarks.

Each fake is a threaded HTTP server on 127.0.0.1 (a free port) used as a context manager::

    with FakeOpenAI(faults=Faults(rate=0.2, seed=1)) as fake:
        client = make_client(settings(base_url=fake.base_url), ...)

- :class:`FakeJobApi`: ``POST /jobs`` + ``GET /jobs/{id}`` with an idempotency-key table
  (the same key never creates a second job); jobs finish after a number of polls.
- :class:`FakeOpenAI`: ``POST /v1/chat/completions``.
- :class:`FakeAnthropic`: ``POST /v1/messages``.

All record every request (:attr:`requests`), accept scripted replies (:meth:`script`,
checked first, e.g. "two 503s, then normal" or "always 401 for key X") and inject
seeded random faults (:class:`Faults`). Status faults (``"500"``, ``"429"``, any
status) answer *before* the request is processed; ``"slow"``, ``"reset"`` and
``"malformed"`` strike *after* it was processed (a job was created, a completion
billed) and lose the answer, which is what exercises idempotency.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Self

from tests.support.loopback import LoopbackServer

logger = logging.getLogger(__name__)

FAULT_KINDS = ("500", "429", "slow", "reset", "malformed")
AFTER_PROCESSING_FAULTS = frozenset({"slow", "reset", "malformed"})
MALFORMED_BODY = b'{"choices": [{"message": '
HANDLER_SOCKET_TIMEOUT = 10.0

Response = tuple[int, Any, dict[str, str]]


@dataclass(frozen=True)
class Faults:
    """Seeded random fault injection: each request fails with probability ``rate``."""

    rate: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS
    seed: int = 0
    retry_after: float = 0.01  # seconds, sent with "429" faults
    slow_seconds: float = 1.0  # how long a "slow" answer stalls (set above the client timeout)

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in AFTER_PROCESSING_FAULTS and not k.isdigit()]
        if unknown or not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"bad faults: rate {self.rate}, unknown kinds {unknown}")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it; header names are lower case."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    fault: str | None = None
    scripted: bool = False


@dataclass
class Reply:
    """A scripted answer; ``times=None`` repeats forever, ``when`` picks requests."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    times: int | None = None
    when: Callable[[RecordedRequest], bool] | None = None
    raw: bytes | None = None  # sent as is instead of JSON (malformed bodies)


def with_key(key: str) -> Callable[[RecordedRequest], bool]:
    """A ``Reply.when`` matcher for requests carrying ``key`` (Bearer or x-api-key)."""

    def match(request: RecordedRequest) -> bool:
        headers = request.headers
        return headers.get("x-api-key") == key or headers.get("authorization") == f"Bearer {key}"

    return match


def openai_error(message: str, type_: str, code: str | int | None = None) -> dict[str, Any]:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def vllm_error(message: str, type_: str, code: int = 400) -> dict[str, Any]:
    """A vLLM-style error body (fields at the top level)."""
    return {"object": "error", "message": message, "type": type_, "param": None, "code": code}


def anthropic_error(type_: str, message: str, error_code: str | None = None) -> dict[str, Any]:
    """An Anthropic-style error body, optionally with ``details.error_code``."""
    error: dict[str, Any] = {"type": type_, "message": message}
    if error_code:
        error["details"] = {"error_code": error_code}
    return {"type": "error", "error": error, "request_id": "req_fake_error"}


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class _FakeProvider:
    """Shared server machinery; subclasses implement :meth:`process` and the error shape."""

    base_path = ""

    def __init__(self, *, faults: Faults | None = None, api_key: str | None = None) -> None:
        self.faults = faults or Faults()
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._rng = random.Random(self.faults.seed)
        self._replies: list[Reply] = []
        self._stopping = threading.Event()
        self._server: LoopbackServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Bind a free port on 127.0.0.1 and serve in a thread."""
        self._server = LoopbackServer(
            self, handler_timeout=HANDLER_SOCKET_TIMEOUT, join_threads=True
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, release stalled answers, join every thread, close the socket."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if self._server is None:
            raise RuntimeError("fake provider is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        """The ``base_url`` a provider config should use for this fake."""
        return self.url + self.base_path

    # -- scripting and inspection ------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Add scripted replies; the first matching one with uses left answers a request."""
        with self._lock:
            self._replies.extend(replies)

    def requests_to(self, method: str, path_prefix: str = "") -> list[RecordedRequest]:
        """The recorded requests with this method whose path starts with ``path_prefix``."""
        with self._lock:
            return [
                r for r in self.requests if r.method == method and r.path.startswith(path_prefix)
            ]

    # -- serving -----------------------------------------------------------------------

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer one request: scripted reply, auth check, fault, or normal processing."""
        request = self._read(handler)
        reply = self._take_reply(request)
        if reply is not None:
            self._record(request, None, scripted=True)
            self._send(handler, reply.status, reply.body, dict(reply.headers), reply.raw)
            return
        denied = self.check_auth(request)
        fault = None if denied else self._draw_fault()
        self._record(request, fault)
        if denied is not None:
            self._send(handler, *denied)
            return
        if fault is not None and fault not in AFTER_PROCESSING_FAULTS:
            self._send(handler, *self._status_fault(int(fault)))
            return
        status, body, headers = self.process(request)
        if fault == "reset":
            self._reset(handler)
        elif fault == "malformed":
            self._send(handler, status, None, headers, MALFORMED_BODY)
        else:
            if fault == "slow":
                self._stopping.wait(self.faults.slow_seconds)
            self._send(handler, status, body, headers)

    def process(self, request: RecordedRequest) -> Response:
        """Handle a request normally (subclasses)."""
        raise NotImplementedError

    def error(self, status: int, message: str, type_: str) -> Response:
        """An error response in this provider's shape (subclasses may override)."""
        return status, openai_error(message, type_), {}

    def check_auth(self, request: RecordedRequest) -> Response | None:
        """A 401 response when an API key is required and the request lacks it."""
        if self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}":
            return None
        return self.error(401, "Incorrect API key provided.", "authentication_error")

    def _status_fault(self, status: int) -> Response:
        code, body, headers = self.error(status, f"injected fault {status}", "fault")
        if status == 429:
            headers = {**headers, "retry-after": f"{self.faults.retry_after:g}"}
        return code, body, headers

    def _read(self, handler: BaseHTTPRequestHandler) -> RecordedRequest:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in handler.headers.items()}
        return RecordedRequest(handler.command, handler.path, headers, body)

    def _take_reply(self, request: RecordedRequest) -> Reply | None:
        with self._lock:
            for reply in self._replies:
                if reply.times == 0 or (reply.when is not None and not reply.when(request)):
                    continue
                if reply.times is not None:
                    reply.times -= 1
                return reply
        return None

    def _draw_fault(self) -> str | None:
        with self._lock:
            if self.faults.rate <= 0 or self._rng.random() >= self.faults.rate:
                return None
            return self._rng.choice(self.faults.kinds)

    def _record(self, request: RecordedRequest, fault: str | None, scripted: bool = False) -> None:
        recorded = RecordedRequest(
            request.method, request.path, request.headers, request.body, fault, scripted
        )
        with self._lock:
            self.requests.append(recorded)

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: Any,
        headers: dict[str, str],
        raw: bytes | None = None,
    ) -> None:
        payload = raw if raw is not None else json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:
            # The client gave up (timeout) before a slow answer came; that was the point.
            handler.close_connection = True

    @staticmethod
    def _reset(handler: BaseHTTPRequestHandler) -> None:
        # Linger 0 turns the close into a TCP reset: no response, no graceful FIN.
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.close_connection = True
        handler.connection.close()


@dataclass
class _Job:
    job_id: str
    key: str | None
    prompt: str
    metadata: Mapping[str, str]
    polls: int = 0


class FakeJobApi(_FakeProvider):
    """A job API with an idempotency-key table: one job per key, however often it is sent.

    Jobs report ``queued`` on the first poll, ``running`` after, and finish on poll number
    ``polls_to_complete``: ``failed`` when ``fail(prompt)`` returns a reason, else
    ``completed`` with ``result(prompt)``.
    """

    def __init__(
        self,
        *,
        faults: Faults | None = None,
        api_key: str | None = None,
        polls_to_complete: int = 2,
        result: Callable[[str], str] | None = None,
        fail: Callable[[str], str | None] | None = None,
        cost_usd: float | None = 0.0123,
        provider_name: str = "fake-llm",
        model: str = "fake-model-1",
    ) -> None:
        super().__init__(faults=faults, api_key=api_key)
        self.polls_to_complete = polls_to_complete
        self.result = result or (lambda prompt: f"done: {prompt[:40]}")
        self.fail = fail
        self.cost_usd = cost_usd
        self.provider_name = provider_name
        self.model = model
        self.jobs: dict[str, _Job] = {}
        self.submissions = 0
        self._by_key: dict[str, str] = {}

    @property
    def jobs_created(self) -> int:
        """How many distinct jobs exist."""
        with self._lock:
            return len(self.jobs)

    @property
    def distinct_keys(self) -> int:
        """How many distinct idempotency keys were submitted."""
        with self._lock:
            return len(self._by_key)

    def process(self, request: RecordedRequest) -> Response:
        """``POST /jobs`` creates or finds a job; ``GET /jobs/{id}`` advances and reports it."""
        if request.method == "POST" and request.path == "/jobs":
            return self._create(request)
        if request.method == "GET" and request.path.startswith("/jobs/"):
            return self._status(request.path.removeprefix("/jobs/"))
        return self.error(404, f"no route {request.method} {request.path}", "not_found")

    def _create(self, request: RecordedRequest) -> Response:
        body = request.body if isinstance(request.body, dict) else {}
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            return self.error(400, "prompt must be a string", "invalid_request")
        key = request.headers.get("idempotency-key")
        with self._lock:
            self.submissions += 1
            known = self.jobs.get(self._by_key.get(key, "")) if key else None
            if known is not None:
                if known.prompt != prompt:
                    return self.error(422, "idempotency key reused for another request", "conflict")
                return 200, {"id": known.job_id, "status": "queued"}, {}
            job = _Job(f"job-{len(self.jobs) + 1:06d}", key, prompt, body.get("metadata") or {})
            self.jobs[job.job_id] = job
            if key:
                self._by_key[key] = job.job_id
        return 201, {"id": job.job_id, "status": "queued"}, {}

    def _status(self, job_id: str) -> Response:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None:
                return self.error(404, f"no job {job_id}", "not_found")
            job.polls += 1
            polls = job.polls
        answer: dict[str, Any] = {"id": job_id, "status": "running", "result": None, "error": None}
        if polls >= self.polls_to_complete:
            reason = self.fail(job.prompt) if self.fail else None
            answer.update(status="failed" if reason else "completed", error=reason)
            if not reason:
                answer.update(
                    result=self.result(job.prompt),
                    provider=self.provider_name,
                    model=self.model,
                    cost_usd=self.cost_usd,
                )
        elif polls == 1:
            answer["status"] = "queued"
        return 200, answer, {}


class FakeOpenAI(_FakeProvider):
    """``POST /v1/chat/completions``; token counts are len/4, ``cached_tokens`` added in."""

    base_path = "/v1"

    def __init__(
        self,
        *,
        faults: Faults | None = None,
        api_key: str | None = None,
        reply: Callable[[str], str] | None = None,
        model: str | None = None,
        cached_tokens: int = 0,
        include_usage: bool = True,
        usage_cost: float | None = None,
    ) -> None:
        super().__init__(faults=faults, api_key=api_key)
        self.reply = reply or (lambda prompt: f"echo: {prompt[:200]}")
        self.model = model
        self.cached_tokens = cached_tokens
        self.include_usage = include_usage
        self.usage_cost = usage_cost
        self.completions = 0

    def process(self, request: RecordedRequest) -> Response:
        """Answer a chat completion with the last user message echoed."""
        if request.method != "POST" or request.path != "/v1/chat/completions":
            return self.error(404, f"no route {request.method} {request.path}", "not_found")
        body = request.body if isinstance(request.body, dict) else {}
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        prompt = next(
            (str(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
        )
        if not prompt or not isinstance(body.get("model"), str):
            return self.error(400, "model and a user message are required", "invalid_request_error")
        text = self.reply(prompt)
        with self._lock:
            self.completions += 1
            number = self.completions
        answer: dict[str, Any] = {
            "id": f"chatcmpl-fake-{number}",
            "object": "chat.completion",
            "model": self.model or body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text},
                }
            ],
        }
        if self.include_usage:
            prompt_tokens = _tokens(prompt) + self.cached_tokens
            usage: dict[str, Any] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": _tokens(text),
                "total_tokens": prompt_tokens + _tokens(text),
                "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            }
            if self.usage_cost is not None:
                usage["cost"] = self.usage_cost
            answer["usage"] = usage
        return 200, answer, {"x-request-id": f"req-fake-{number}"}


class FakeAnthropic(_FakeProvider):
    """``POST /v1/messages``; requires ``anthropic-version``, reports cache tokens."""

    def __init__(
        self,
        *,
        faults: Faults | None = None,
        api_key: str | None = None,
        reply: Callable[[str], str] | None = None,
        model: str | None = None,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> None:
        super().__init__(faults=faults, api_key=api_key)
        self.reply = reply or (lambda prompt: f"echo: {prompt[:200]}")
        self.model = model
        self.cache_read_tokens = cache_read_tokens
        self.cache_write_tokens = cache_write_tokens
        self.messages = 0

    def error(self, status: int, message: str, type_: str) -> Response:
        """An Anthropic error body with a ``request-id`` header."""
        return status, anthropic_error(type_, message), {"request-id": "req_fake_error"}

    def check_auth(self, request: RecordedRequest) -> Response | None:
        """401 without the right ``x-api-key``; 400 without ``anthropic-version``."""
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return self.error(401, "invalid x-api-key", "authentication_error")
        if "anthropic-version" not in request.headers:
            return self.error(400, "anthropic-version header is required", "invalid_request_error")
        return None

    def process(self, request: RecordedRequest) -> Response:
        """Answer a message with the user's text echoed."""
        if request.method != "POST" or request.path != "/v1/messages":
            return self.error(404, f"no route {request.method} {request.path}", "not_found_error")
        body = request.body if isinstance(request.body, dict) else {}
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        prompt = str(messages[-1].get("content")) if messages else ""
        if not prompt or not isinstance(body.get("max_tokens"), int):
            return self.error(400, "messages and max_tokens are required", "invalid_request_error")
        text = self.reply(prompt)
        with self._lock:
            self.messages += 1
            number = self.messages
        answer = {
            "id": f"msg_fake_{number}",
            "type": "message",
            "role": "assistant",
            "model": self.model or body.get("model"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": _tokens(prompt),
                "output_tokens": _tokens(text),
                "cache_creation_input_tokens": self.cache_write_tokens,
                "cache_read_input_tokens": self.cache_read_tokens,
            },
        }
        return 200, answer, {"request-id": f"req_fake_{number}"}
