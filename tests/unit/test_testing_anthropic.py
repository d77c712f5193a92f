"""The mock Anthropic Messages API, driven over real HTTP on 127.0.0.1 with httpx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.anthropic_mock import (
    MockAnthropic,
    Rule,
    ToolCall,
    offered_tools,
    prompt_text,
    request_token,
)

SUBSCRIBER = "sk-ant-oat01-alice"
OTHER = "sk-ant-oat01-bob"
API_KEY = "sk-test"


@pytest.fixture
def api() -> Iterator[MockAnthropic]:
    """A running mock."""
    with MockAnthropic() as mock:
        yield mock


@pytest.fixture
def client(api: MockAnthropic) -> Iterator[httpx.Client]:
    """An httpx client aimed at the mock."""
    with httpx.Client(base_url=api.url, timeout=10) as http:
        yield http


def message(
    client: httpx.Client,
    text: str,
    *,
    token: str = SUBSCRIBER,
    stream: bool = False,
    max_tokens: int = 1024,
    tools: tuple[str, ...] = (),
) -> httpx.Response:
    """POST one Messages API request the way Claude Code does (``?beta=true``, Bearer token)."""
    body: dict[str, Any] = {
        "model": "claude-test",
        "max_tokens": max_tokens,
        "stream": stream,
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
    }
    if tools:
        body["tools"] = [{"name": name, "input_schema": {"type": "object"}} for name in tools]
    headers = {"Authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"}
    return client.post("/v1/messages?beta=true", json=body, headers=headers)


def sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a server-sent event stream."""
    events = []
    for block in response.text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_head_root_answers_200(client: httpx.Client) -> None:
    """``HEAD /`` (the CLI's connectivity check) answers 200 with no body."""
    response = client.head("/")
    assert response.status_code == 200
    assert response.content == b""


def test_unknown_path_answers_404_with_an_anthropic_error(client: httpx.Client) -> None:
    """Any other path answers 404 in the Anthropic error shape."""
    response = client.get("/api/oauth/profile")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_the_startup_probe_gets_a_json_message(api: MockAnthropic, client: httpx.Client) -> None:
    """A non-streaming ``max_tokens: 1`` probe gets one JSON message with the default text."""
    response = message(client, "quota", max_tokens=1)
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "message" and body["stop_reason"] == "end_turn"
    assert body["content"] == [{"type": "text", "text": "DONE: mock reply 1"}]
    [entry] = api.log
    assert entry["path"] == "/v1/messages"
    assert entry["token"] == SUBSCRIBER
    assert entry["prompt"] == "quota"
    assert entry["max_tokens"] == 1 and entry["stream"] is False
    assert entry["status"] == 200 and entry["reply"] == "DONE: mock reply 1"


def test_a_streamed_reply_has_the_event_sequence_claude_code_reads(
    client: httpx.Client,
) -> None:
    """``stream: true`` answers SSE from message_start to message_stop with one text delta."""
    message(client, "warm up")
    response = message(client, "hello", stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse(response)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    assert events[2][1]["delta"] == {"type": "text_delta", "text": "DONE: mock reply 2"}
    assert events[4][1]["delta"]["stop_reason"] == "end_turn"


def test_an_exhausted_token_gets_a_subscriber_429_with_unified_headers(
    api: MockAnthropic, client: httpx.Client
) -> None:
    """An exhausted token answers 429 rate_limit_error with the unified headers; others do not."""
    api.exhaust(SUBSCRIBER, 1_800_000_000, claim="seven_day")
    response = message(client, "hello", stream=True)
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert response.headers["anthropic-ratelimit-unified-status"] == "rejected"
    assert response.headers["anthropic-ratelimit-unified-reset"] == "1800000000"
    assert response.headers["anthropic-ratelimit-unified-representative-claim"] == "seven_day"
    assert message(client, "hello", token=OTHER).status_code == 200
    api.restore(SUBSCRIBER)
    assert message(client, "hello").status_code == 200
    assert [e["status"] for e in api.log] == [429, 200, 200]


def test_a_token_runs_out_after_its_allowance_and_comes_back_at_the_reset(
    api: MockAnthropic, client: httpx.Client
) -> None:
    """``exhaust_after``: two task requests pass, the third gets the 429; a past reset lifts it."""
    api.exhaust_after(SUBSCRIBER, 2, 1_800_000_000)
    statuses = [message(client, f"[agentq task t{i}.md · x]").status_code for i in range(3)]
    assert statuses == [200, 200, 429]
    assert message(client, "not a task").status_code == 429
    api.exhaust_after(OTHER, 0, 1)  # a reset already past: the quota is back at once
    assert message(client, "[agentq task a]", token=OTHER).status_code == 200


def test_quota_is_kept_for_an_x_api_key_too(api: MockAnthropic, client: httpx.Client) -> None:
    """A token sent as ``x-api-key`` is the one the quota is kept for."""
    api.exhaust(API_KEY, 1_800_000_000)
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    response = client.post("/v1/messages", json=body, headers={"x-api-key": API_KEY})
    assert response.status_code == 429
    assert api.log[-1]["token"] == API_KEY


def test_an_unknown_claim_is_refused(api: MockAnthropic) -> None:
    """Only the representative claims the API names can be scripted."""
    with pytest.raises(ValueError, match="claim"):
        api.exhaust(SUBSCRIBER, 1_800_000_000, claim="daily")


@pytest.mark.parametrize(
    ("keyword", "status", "error_type"),
    [("MOCK500", 500, "api_error"), ("MOCK529", 529, "overloaded_error")],
    ids=["MOCK500 answers 500 api_error", "MOCK529 answers 529 overloaded_error"],
)
def test_a_prompt_keyword_fails_every_time(
    api: MockAnthropic, client: httpx.Client, keyword: str, status: int, error_type: str
) -> None:
    """A scripted keyword fails each request that carries it, not once."""
    for _ in range(3):
        response = message(client, f"please {keyword} now", stream=True)
        assert response.status_code == status
        assert response.json() == {
            "type": "error",
            "error": {"type": error_type, "message": response.json()["error"]["message"]},
        }
    assert api.replies() == []
    assert message(client, "no keyword here").status_code == 200


def test_reply_text_is_configurable(client: httpx.Client) -> None:
    """A reply function and a keyword rule with text replace the default reply."""
    with MockAnthropic(reply=lambda prompt, n: f"#{n}: {prompt.upper()}") as api:
        api.on_prompt(Rule("SPECIAL", text="scripted answer"))
        with httpx.Client(base_url=api.url, timeout=10) as http:
            assert message(http, "abc").json()["content"][0]["text"] == "#1: ABC"
            assert message(http, "a SPECIAL one").json()["content"][0]["text"] == "scripted answer"
        assert api.replies() == ["#1: ABC", "scripted answer"]


AGENT_CALL = ToolCall("Agent", {"description": "helper", "prompt": "SUBTASK go"})


def test_a_tool_call_rule_answers_with_a_tool_use_block() -> None:
    """A tool-call rule makes the reply call the tool (stop_reason tool_use), JSON or streamed."""
    with (
        MockAnthropic(rules=(Rule("DELEGATE", tool=AGENT_CALL),)) as api,
        httpx.Client(base_url=api.url, timeout=10) as http,
    ):
        body = message(http, "please DELEGATE", tools=("Bash", "Agent")).json()
        streamed = sse(message(http, "DELEGATE again", stream=True, tools=("Agent",)))
    assert body["stop_reason"] == "tool_use"
    [call] = body["content"]
    assert call["type"] == "tool_use" and call["name"] == "Agent"
    assert call["input"] == {"description": "helper", "prompt": "SUBTASK go"}
    assert call["id"].startswith("toolu_mock_")
    starts = [data["content_block"] for name, data in streamed if name == "content_block_start"]
    assert [block["type"] for block in starts] == ["tool_use"]
    deltas = [data["delta"] for name, data in streamed if name == "content_block_delta"]
    assert json.loads(deltas[0]["partial_json"]) == dict(AGENT_CALL.input)
    [stop] = [data for name, data in streamed if name == "message_delta"]
    assert stop["delta"]["stop_reason"] == "tool_use"


def test_a_tool_call_rule_needs_the_tool_to_be_offered() -> None:
    """A request that does not offer the tool (a title request, say) gets the default reply."""
    with (
        MockAnthropic(rules=(Rule("DELEGATE", tool=AGENT_CALL, text="On it."),)) as api,
        httpx.Client(base_url=api.url, timeout=10) as http,
    ):
        plain = message(http, "please DELEGATE", tools=("Bash",)).json()
        offered = message(http, "please DELEGATE", tools=("Agent",)).json()
    assert plain["stop_reason"] == "end_turn"
    assert plain["content"] == [{"type": "text", "text": "DONE: mock reply 1"}]
    assert [block["type"] for block in offered["content"]] == ["text", "tool_use"]
    assert offered["content"][0]["text"] == "On it."


def test_offered_tools_reads_the_tool_names() -> None:
    """The offered tools are the names in the body's ``tools`` list; junk is ignored."""
    assert offered_tools({"tools": [{"name": "Bash"}, {"name": 3}, "x", {"name": "Agent"}]}) == {
        "Bash",
        "Agent",
    }
    assert offered_tools({"messages": []}) == frozenset()
    assert offered_tools(None) == frozenset()


def test_a_request_without_max_tokens_is_a_400(client: httpx.Client) -> None:
    """A malformed Messages request answers 400 invalid_request_error."""
    response = client.post("/v1/messages", json={"messages": []})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_count_tokens_answers(client: httpx.Client) -> None:
    """``/v1/messages/count_tokens`` answers an input token count."""
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    response = client.post("/v1/messages/count_tokens?beta=true", json=body)
    assert response.status_code == 200
    assert response.json()["input_tokens"] > 0


def test_url_needs_a_running_server() -> None:
    """Asking a stopped mock for its URL is an error, not a wrong address."""
    with pytest.raises(RuntimeError, match="not running"):
        _ = MockAnthropic().url


def test_prompt_text_reads_the_last_user_message() -> None:
    """The prompt is the last user message's text blocks, whatever came before."""
    body = {
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "answer"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                    {"type": "image", "source": {}},
                    {"type": "text", "text": "second"},
                ],
            },
        ]
    }
    assert prompt_text(body) == "<system-reminder>x</system-reminder>\nsecond"
    assert prompt_text({"messages": []}) == ""
    assert prompt_text(None) == ""


def test_request_token_prefers_the_bearer_token() -> None:
    """The Bearer token wins over ``x-api-key``; neither gives None."""
    assert request_token({"authorization": "Bearer abc", "x-api-key": "k"}) == "abc"
    assert request_token({"x-api-key": "k"}) == "k"
    assert request_token({}) is None
