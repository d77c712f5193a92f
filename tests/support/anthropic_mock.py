"""A local mock of the Anthropic Messages API that the real Claude Code CLI can run against.

A threaded HTTP server on 127.0.0.1 (a free port), used as a context manager::

    with MockAnthropic() as api:
        env = {"ANTHROPIC_BASE_URL": api.url, ...}
        api.exhaust("sk-ant-oat01-a", reset_epoch=1767225600)

What it answers (the shapes Claude Code 2.1.x expects):

- ``POST /v1/messages`` (``?beta=true`` or not): with ``"stream": true`` a server-sent event
  stream (``message_start`` … ``message_stop``), otherwise one JSON message (the start-up
  probe sends ``max_tokens: 1`` without streaming). The reply text is ``DONE: mock reply <n>``
  unless configured; ``n`` counts the successful replies.
- Scripted errors by prompt keyword: a prompt holding ``MOCK500`` gets a 500 ``api_error``,
  ``MOCK529`` a 529 ``overloaded_error``, every time (add more with :meth:`on_prompt`).
- Scripted tool calls: a rule with a :class:`ToolCall` answers with a ``tool_use`` block
  (``stop_reason: tool_use``), so the agent runs that tool (``Bash``, ``Agent``, …) and sends
  its result back; the follow-up request (its last user message holds only the tool result)
  gets the default reply. A tool-call rule applies only to requests that offer that tool.
- Held answers: a rule with a ``delay`` keeps the request waiting that long before answering
  (the agent stays busy, as on a long turn); :meth:`in_flight` lists the requests held now.
  An :meth:`exhaust` of the request's token ends the hold at once with the 429, as when a
  usage limit cuts a turn short.
- Subscriber quota per token (``Authorization: Bearer`` or ``x-api-key``):
  :meth:`exhaust` makes every request with that token answer 429 ``rate_limit_error`` with
  the ``anthropic-ratelimit-unified-*`` headers until :meth:`restore`; :meth:`exhaust_after`
  lets a token's first N task requests through, then answers the 429 until its reset time
  passes (then the token has its quota back by itself).
- ``POST /v1/messages/count_tokens`` counts roughly; ``HEAD``/``GET /`` answer 200; any other
  path answers 404 with an Anthropic error body.
- Every request is logged (:attr:`log`): method, path, token, prompt text, status, reply.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Self

from tests.support.loopback import LoopbackServer

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_RULES",
    "QUOTA_CLAIMS",
    "MockAnthropic",
    "Rule",
    "ToolCall",
    "content_blocks",
    "default_reply",
    "error_body",
    "offered_tools",
    "prompt_text",
    "request_token",
    "sse_events",
]

#: The representative claims a subscriber 429 can name.
QUOTA_CLAIMS = ("five_hour", "seven_day", "seven_day_opus", "seven_day_sonnet", "overage")
DEFAULT_MODEL = "claude-sonnet-4-5-20250929"
HANDLER_SOCKET_TIMEOUT = 30.0
MAX_BODY_BYTES = 50_000_000
QUOTA_MESSAGE = "This request would exceed your account's rate limit. Please try again later."


@dataclass(frozen=True)
class ToolCall:
    """A tool the mock asks the agent to run: the tool's name and its input object."""

    name: str
    input: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """A scripted answer for every request whose prompt contains ``keyword``.

    An ``error_type`` makes it an error reply (``status`` with an Anthropic error body);
    otherwise ``text`` replaces the default reply text. A ``delay`` (seconds) holds the
    answer that long first, unless the request's token is exhausted meanwhile (then it
    answers the 429 at once). ``tokens``, when given, limits the rule to those credentials.
    A ``tool`` makes the reply call that tool after ``text`` (if any); such a rule matches
    only requests that offer the tool.
    """

    keyword: str
    status: int = 200
    error_type: str | None = None
    message: str | None = None
    text: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    tokens: frozenset[str] | None = None
    tool: ToolCall | None = None

    def matches(
        self, prompt: str, token: str | None, offered: frozenset[str] = frozenset()
    ) -> bool:
        """Whether this rule answers a request with ``prompt`` sent with ``token``.

        ``offered`` names the tools the request offers (a tool-call rule needs its tool).
        """
        if self.tool is not None and self.tool.name not in offered:
            return False
        return self.keyword in prompt and (self.tokens is None or token in self.tokens)


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("MOCK500", 500, "api_error", "Internal server error"),
    Rule("MOCK529", 529, "overloaded_error", "Overloaded"),
)


def default_reply(prompt: str, number: int) -> str:
    """The default reply text: ``DONE: mock reply <number>``."""
    return f"DONE: mock reply {number}"


def error_body(type_: str, message: str) -> dict[str, Any]:
    """An Anthropic error body."""
    return {"type": "error", "error": {"type": type_, "message": message}}


def request_token(headers: Mapping[str, str]) -> str | None:
    """The credential a request carries: the Bearer token, else ``x-api-key`` (lower-case keys)."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return headers.get("x-api-key") or None


def prompt_text(body: object) -> str:
    """The text of the last user message of a Messages API request body ('' when none)."""
    if not isinstance(body, dict):
        return ""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    users = [m for m in messages if m.get("role") == "user"]
    if not users:
        return ""
    content = users[-1].get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [b.get("text") for b in content if isinstance(b, dict) and b.get("type") == "text"]
    return "\n".join(t for t in texts if isinstance(t, str))


def offered_tools(body: object) -> frozenset[str]:
    """The names of the tools a Messages API request body offers."""
    if not isinstance(body, dict) or not isinstance(body.get("tools"), list):
        return frozenset()
    names = (tool.get("name") for tool in body["tools"] if isinstance(tool, dict))
    return frozenset(name for name in names if isinstance(name, str))


def content_blocks(text: str, tool: ToolCall | None, tool_use_id: str) -> list[dict[str, Any]]:
    """The content of a reply: its text (omitted when empty before a tool call), then the call."""
    blocks: list[dict[str, Any]] = []
    if text or tool is None:
        blocks.append({"type": "text", "text": text})
    if tool is not None:
        call = {"type": "tool_use", "id": tool_use_id, "name": tool.name, "input": dict(tool.input)}
        blocks.append(call)
    return blocks


def sse_events(
    message_id: str,
    model: str,
    text: str,
    input_tokens: int,
    tool: ToolCall | None = None,
    tool_use_id: str = "toolu_mock",
) -> list[bytes]:
    """The server-sent events of one streamed reply (text, then an optional tool call)."""
    usage = {"input_tokens": input_tokens, "output_tokens": 1}
    start: dict[str, Any] = {"id": message_id, "type": "message", "role": "assistant"}
    start |= {"model": model, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = usage
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start})
    ]
    for index, block in enumerate(content_blocks(text, tool, tool_use_id)):
        events += _block_events(index, block)
    stop_reason = "end_turn" if tool is None else "tool_use"
    events += [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": _tokens(text)},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events]


def _block_events(index: int, block: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The start, delta and stop events of one content block."""
    if block["type"] == "tool_use":
        opened = {**block, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
    else:
        opened = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": block["text"]}
    return [
        (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": opened},
        ),
        ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}),
        ("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


@dataclass(frozen=True)
class _Answer:
    """What the mock decided to send for one request."""

    status: int
    body: dict[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    stream: list[bytes] | None = None
    reply: str | None = None


class MockAnthropic:
    """The Messages API mock (see the module docstring); start/stop or use ``with``.

    Args:
        reply: the text of a successful reply, from the prompt and the reply's number.
        rules: scripted answers by prompt keyword, checked in order (first match wins).
        model: the model named in replies (default: the one the request asked for).
        chunk_delay: seconds to pause between streamed events (to keep a turn busy a while).
    """

    def __init__(
        self,
        *,
        reply: Callable[[str, int], str] = default_reply,
        rules: tuple[Rule, ...] = DEFAULT_RULES,
        model: str | None = None,
        chunk_delay: float = 0.0,
    ) -> None:
        self.reply = reply
        self.model = model
        self.chunk_delay = chunk_delay
        self._rules = list(rules)
        self._quota: dict[str, tuple[int, str]] = {}
        #: Per token: task requests still allowed, the reset, the claim, the keyword counted.
        self._allowance: dict[str, tuple[int, int, str, str]] = {}
        #: Tokens whose quota comes back by itself at the reset (:meth:`exhaust_after`).
        self._lifts: set[str] = set()
        self._log: list[dict[str, Any]] = []
        self._replies = 0
        self._lock = threading.Lock()
        #: Notified when a token's quota changes or the server stops (ends held answers).
        self._changed = threading.Condition(self._lock)
        self._held: list[dict[str, Any]] = []
        self._stopping = threading.Event()
        self._server: LoopbackServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Bind a free port on 127.0.0.1 and serve in a thread."""
        self._stopping.clear()
        self._server = LoopbackServer(
            self, handler_timeout=HANDLER_SOCKET_TIMEOUT, join_threads=False
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
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
        """``http://127.0.0.1:PORT`` (the ``ANTHROPIC_BASE_URL`` to give the agent)."""
        if self._server is None:
            raise RuntimeError("the mock Anthropic API is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- scripting and inspection ------------------------------------------------------

    def exhaust(self, token: str, reset_epoch: int, claim: str = "five_hour") -> None:
        """Make each request with ``token`` answer a subscriber 429 resetting at ``reset_epoch``."""
        if claim not in QUOTA_CLAIMS:
            raise ValueError(f"unknown representative claim {claim!r}; one of {QUOTA_CLAIMS}")
        with self._changed:
            self._quota[token] = (int(reset_epoch), claim)
            self._changed.notify_all()

    def exhaust_after(
        self,
        token: str,
        requests: int,
        reset_epoch: int,
        claim: str = "five_hour",
        keyword: str = "[agentq task",
    ) -> None:
        """Let ``token``'s first ``requests`` task requests through (prompts holding ``keyword``;
        title requests aside), then answer the subscriber 429 until ``reset_epoch`` passes."""
        if claim not in QUOTA_CLAIMS:
            raise ValueError(f"unknown representative claim {claim!r}; one of {QUOTA_CLAIMS}")
        with self._lock:
            self._allowance[token] = (requests, int(reset_epoch), claim, keyword)

    def restore(self, token: str) -> None:
        """Give ``token`` its quota back."""
        with self._lock:
            self._quota.pop(token, None)

    def on_prompt(self, rule: Rule) -> None:
        """Add a scripted answer, checked before the existing ones."""
        with self._lock:
            self._rules.insert(0, rule)

    def in_flight(self) -> list[dict[str, Any]]:
        """The requests held by a ``delay`` rule right now: token, prompt, since (monotonic)."""
        with self._lock:
            return [dict(entry) for entry in self._held]

    @property
    def log(self) -> list[dict[str, Any]]:
        """A copy of the request log: method, path, token, prompt, stream, status, reply."""
        with self._lock:
            return [dict(entry) for entry in self._log]

    def messages(self) -> list[dict[str, Any]]:
        """The logged ``POST /v1/messages`` requests (start-up probes included)."""
        return [e for e in self.log if e["method"] == "POST" and e["path"] == "/v1/messages"]

    def replies(self) -> list[str]:
        """The texts of every successful message reply so far, in order."""
        return [e["reply"] for e in self.messages() if e["reply"] is not None]

    # -- serving -----------------------------------------------------------------------

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer one request and log it."""
        path = handler.path.split("?", 1)[0]
        headers = {name.lower(): value for name, value in handler.headers.items()}
        body = self._read_body(handler)
        prompt = prompt_text(body)
        answer = self._answer(handler.command, path, headers, body, prompt)
        entry = {
            "method": handler.command,
            "path": path,
            "token": request_token(headers),
            "prompt": prompt,
            "stream": isinstance(body, dict) and body.get("stream") is True,
            "max_tokens": body.get("max_tokens") if isinstance(body, dict) else None,
            "status": answer.status,
            "reply": answer.reply,
        }
        with self._lock:
            self._log.append(entry)
        self._send(handler, answer)

    def _read_body(self, handler: BaseHTTPRequestHandler) -> object:
        length = int(handler.headers.get("content-length") or 0)
        if not 0 < length <= MAX_BODY_BYTES:
            return None
        try:
            return json.loads(handler.rfile.read(length))
        except ValueError:
            return None

    def _answer(
        self, method: str, path: str, headers: Mapping[str, str], body: object, prompt: str
    ) -> _Answer:
        if path == "/" and method in ("HEAD", "GET"):
            return _Answer(200, {"status": "ok"})
        if method == "POST" and path == "/v1/messages/count_tokens":
            return _Answer(200, {"input_tokens": _tokens(json.dumps(body))})
        if method != "POST" or path != "/v1/messages":
            return _Answer(404, error_body("not_found_error", f"no route {method} {path}"))
        if not isinstance(body, dict) or not isinstance(body.get("max_tokens"), int):
            return _Answer(400, error_body("invalid_request_error", "max_tokens is required"))
        token = request_token(headers)
        self._count_request(token, prompt)
        rule = self._rule_for(prompt, token, offered_tools(body))
        if rule is not None and rule.delay > 0:
            self._hold(token, prompt, rule.delay)
        quota = self._quota_answer(token)
        if quota is not None:
            return quota
        if rule is not None and rule.error_type is not None:
            message = rule.message or rule.error_type
            return _Answer(rule.status, error_body(rule.error_type, message), rule.headers)
        return self._message(body, prompt, rule)

    def _count_request(self, token: str | None, prompt: str) -> None:
        """Count a task request against ``token``'s allowance; past it, the token is out."""
        with self._changed:
            allowance = self._allowance.get(token) if token else None
            if token is None or allowance is None:
                return
            left, reset_epoch, claim, keyword = allowance
            if keyword not in prompt or "<session>" in prompt:
                return
            self._allowance[token] = (left - 1, reset_epoch, claim, keyword)
            if left <= 0:
                self._quota[token] = (reset_epoch, claim)
                self._lifts.add(token)
                self._allowance.pop(token)
                self._changed.notify_all()

    def _quota_answer(self, token: str | None) -> _Answer | None:
        with self._lock:
            exhausted = self._quota.get(token) if token else None
            lifted = exhausted is not None and exhausted[0] <= time.time()
            if token is not None and lifted and token in self._lifts:  # the reset passed
                self._quota.pop(token)
                self._lifts.discard(token)
                exhausted = None
        if exhausted is None:
            return None
        reset_epoch, claim = exhausted
        headers = {
            "anthropic-ratelimit-unified-status": "rejected",
            "anthropic-ratelimit-unified-reset": str(reset_epoch),
            "anthropic-ratelimit-unified-representative-claim": claim,
            # Subscriber limits carry per-window statuses too; the named window is the one out.
            f"anthropic-ratelimit-unified-{claim.replace('_', '-')}-status": "rejected",
            f"anthropic-ratelimit-unified-{claim.replace('_', '-')}-reset": str(reset_epoch),
        }
        return _Answer(429, error_body("rate_limit_error", QUOTA_MESSAGE), headers)

    def _rule_for(self, prompt: str, token: str | None, offered: frozenset[str]) -> Rule | None:
        with self._lock:
            return next((r for r in self._rules if r.matches(prompt, token, offered)), None)

    def _hold(self, token: str | None, prompt: str, delay: float) -> None:
        """Wait ``delay`` seconds, or less if the token gets exhausted or the server stops."""
        since = time.monotonic()
        entry: dict[str, Any] = {"token": token, "prompt": prompt, "since": since}
        deadline = since + delay
        with self._changed:
            self._held.append(entry)
            try:
                while not self._stopping.is_set() and (token is None or token not in self._quota):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._changed.wait(left)
            finally:
                self._held.remove(entry)

    def _message(self, body: Mapping[str, Any], prompt: str, rule: Rule | None) -> _Answer:
        with self._lock:
            self._replies += 1
            number = self._replies
        tool = rule.tool if rule is not None else None
        if rule is not None and rule.text is not None:
            text = rule.text
        else:
            text = "" if tool is not None else self.reply(prompt, number)
        model = self.model or str(body.get("model") or DEFAULT_MODEL)
        message_id = f"msg_mock_{number:06d}"
        tool_use_id = f"toolu_mock_{number:06d}"
        headers = {"request-id": f"req_mock_{number:06d}", **(rule.headers if rule else {})}
        if body.get("stream") is True:
            events = sse_events(message_id, model, text, _tokens(prompt), tool, tool_use_id)
            return _Answer(200, None, headers, stream=events, reply=text)
        message = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content_blocks(text, tool, tool_use_id),
            "stop_reason": "end_turn" if tool is None else "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": _tokens(prompt), "output_tokens": _tokens(text)},
        }
        return _Answer(200, message, headers, reply=text)

    def _send(self, handler: BaseHTTPRequestHandler, answer: _Answer) -> None:
        try:
            handler.send_response(answer.status)
            for name, value in answer.headers.items():
                handler.send_header(name, value)
            if answer.stream is not None:
                self._send_stream(handler, answer.stream)
                return
            payload = json.dumps(answer.body).encode() if answer.body is not None else b""
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(payload)
        except OSError:
            handler.close_connection = True  # the client went away; nothing left to tell it

    def _send_stream(self, handler: BaseHTTPRequestHandler, events: list[bytes]) -> None:
        # HTTP/1.0 without a length: the body ends when the connection closes.
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Connection", "close")
        handler.end_headers()
        for event in events:
            handler.wfile.write(event)
            handler.wfile.flush()
            if self.chunk_delay and self._stopping.wait(self.chunk_delay):
                break
        handler.close_connection = True
