"""Provider clients against real HTTP fakes on 127.0.0.1: retries, idempotency, cost, secrets."""

from __future__ import annotations

import logging
import os
import socket
import traceback
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from agentq.config.models import PriceConfig, ProviderConfig
from agentq.core.errors import ConfigError, ProviderError
from agentq.core.secrets import resolve_key
from agentq.delegation.http import ProviderHTTPError
from agentq.delegation.pricing import format_cost
from agentq.delegation.providers import (
    JobStatus,
    ProviderClient,
    ProviderSettings,
    Submission,
    make_client,
)
from agentq.delegation.retry import backoff_delay, classify, parse_retry_after
from tests.support.providers import (
    FakeAnthropic,
    FakeJobApi,
    FakeOpenAI,
    Faults,
    Reply,
    anthropic_error,
    openai_error,
    vllm_error,
    with_key,
)

pytestmark = pytest.mark.integration

Waits = list[float]


@pytest.fixture
def waits() -> Waits:
    """The waits the retry loop asked for (recorded instead of slept)."""
    return []


def _settings(base_url: str, kind: str = "openai-compatible", **overrides: Any) -> ProviderConfig:
    fields: dict[str, Any] = {
        "name": "p1",
        "kind": kind,
        "base_url": base_url,
        "model": None if kind == "job-api" else "gpt-4.1",
        "timeout": 2.0,
        "max_retries": 5,
    }
    fields.update(overrides)
    return ProviderConfig(**fields)


@contextmanager
def _open(
    settings: ProviderSettings, waits: Waits, key: str | None = None
) -> Iterator[ProviderClient]:
    client = make_client(settings, lambda _p: key, sleep=waits.append, backoff_base=0.001)
    try:
        yield client
    finally:
        client.close()


def _submit(
    base_url: str,
    waits: Waits,
    kind: str = "openai-compatible",
    key: str | None = None,
    prompt: str = "hello",
    **overrides: Any,
) -> Submission:
    with _open(_settings(base_url, kind, **overrides), waits, key) as client:
        return client.submit(prompt, {}, "key-1")


def _poll_until_done(client: ProviderClient, job_id: str, limit: int = 50) -> JobStatus:
    for _ in range(limit):
        status = client.poll(job_id)
        if status.state in ("completed", "failed"):
            return status
    raise AssertionError(f"job {job_id} did not finish in {limit} polls")


def test_sync_config_protocol() -> None:
    """The real ProviderConfig satisfies the ProviderSettings protocol (checked by mypy)."""
    settings: ProviderSettings = _settings("http://127.0.0.1:9/v1")
    assert settings.kind == "openai-compatible"


# -- retries ----------------------------------------------------------------------------------


def test_retries_then_succeeds(waits: Waits) -> None:
    """Two 503s and a malformed 200 are retried; the fourth attempt succeeds."""
    with FakeOpenAI() as fake:
        fake.script(
            Reply(503, openai_error("overloaded", "server_error"), times=2),
            Reply(200, raw=b"{not json", times=1),
        )
        with _open(_settings(fake.base_url), waits) as client:
            submission = client.submit("write a haiku", {}, "key-1")
    assert submission.result is not None
    assert submission.result.text == "echo: write a haiku"
    assert submission.result.attempts == 4
    assert len(waits) == 3
    assert len(fake.requests) == 4


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "40", "retry-after": "9"}, 0.04),
    ],
    ids=["retry-after in seconds is honoured", "retry-after-ms wins over retry-after"],
)
def test_retry_after_honoured(waits: Waits, headers: dict[str, str], expected: float) -> None:
    """A 429 with a retry-after below the cap waits exactly that long, then retries."""
    with FakeAnthropic(api_key="sk-ant-test-0001") as fake:
        fake.script(Reply(429, anthropic_error("rate_limit_error", "slow down"), headers, times=1))
        settings = _settings(fake.base_url, "anthropic", model="claude-sonnet-4-5")
        with _open(settings, waits, "sk-ant-test-0001") as client:
            submission = client.submit("hello", {}, "key-1")
    assert submission.result is not None
    assert waits == [pytest.approx(expected)]


def test_retry_after_above_cap_is_terminal(waits: Waits) -> None:
    """A retry-after longer than the cap stops at once with a terminal error, no sleeping."""
    with FakeOpenAI() as fake:
        fake.script(Reply(429, openai_error("busy", "rate_limit"), {"retry-after": "3600"}))
        with pytest.raises(ProviderHTTPError) as caught:
            _submit(fake.base_url, waits, retry_after_cap=120)
    assert caught.value.terminal
    assert caught.value.status == 429
    assert "retry-after 3600 s exceeds the 120 s cap" in str(caught.value)
    assert waits == []
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, openai_error("bad request", "invalid_request_error")),
        (401, openai_error("invalid api key", "invalid_request_error", "invalid_api_key")),
        (402, {"error": {"code": 402, "message": "Insufficient credits"}}),
        (403, openai_error("flagged", "moderation")),
        (404, openai_error("model not found", "invalid_request_error")),
        (413, openai_error("too large", "request_too_large")),
        (422, vllm_error("extra fields not permitted", "BadRequestError", 422)),
        (429, openai_error("You exceeded your current quota", "insufficient_quota")),
        (429, anthropic_error("rate_limit_error", "spend cap", "enforced_spend_limit_reached")),
    ],
    ids=[
        "400 is terminal",
        "401 is terminal",
        "402 no credits is terminal",
        "403 is terminal",
        "404 is terminal",
        "413 is terminal",
        "422 is terminal",
        "429 insufficient_quota is terminal",
        "429 enforced_spend_limit_reached is terminal",
    ],
)
def test_terminal_errors_send_one_request(waits: Waits, status: int, body: dict[str, Any]) -> None:
    """Terminal statuses fail after exactly one request and say what the server said."""
    with FakeOpenAI() as fake:
        fake.script(Reply(status, body))
        with pytest.raises(ProviderHTTPError) as caught:
            _submit(fake.base_url, waits, name="gpu")
    error = caught.value
    assert error.terminal and not error.exhausted
    assert error.status == status and error.attempts == 1 and error.provider == "gpu"
    assert str(error).startswith(f"HTTP {status} from openai-compatible provider 'gpu': ")
    assert len(fake.requests) == 1
    assert waits == []


def test_401_message_is_precise(waits: Waits) -> None:
    """A wrong key gives one line naming the status, the provider and the server's reason."""
    with FakeOpenAI(api_key="sk-right-key-123") as fake, pytest.raises(ProviderHTTPError) as caught:
        _submit(fake.base_url, waits, key="sk-wrong-key-456", name="gpu")
    assert str(caught.value) == (
        "HTTP 401 from openai-compatible provider 'gpu': "
        "Incorrect API key provided. (authentication_error)"
    )


def test_gives_up_after_all_retries(waits: Waits) -> None:
    """Persistent 503s exhaust the retries; the error counts the attempts and is not terminal."""
    with FakeOpenAI() as fake:
        fake.script(Reply(503, openai_error("no provider available", "server_error")))
        with pytest.raises(ProviderHTTPError) as caught:
            _submit(fake.base_url, waits, name="gpu", max_retries=2)
    error = caught.value
    assert str(error) == (
        "gave up after 3 attempts: HTTP 503 from openai-compatible provider 'gpu': "
        "no provider available (server_error)"
    )
    assert error.exhausted and not error.terminal
    assert (error.attempts, error.retries, error.status) == (3, 2, 503)
    assert len(waits) == 2


def test_connection_refused_is_retried_then_reported(waits: Waits) -> None:
    """A closed port is a transport error: retried, then one clear line."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = _settings(f"http://127.0.0.1:{port}/v1", name="gpu", max_retries=1)
    with _open(settings, waits) as client, pytest.raises(ProviderHTTPError) as caught:
        client.submit("hello", {}, "key-1")
    assert str(caught.value).startswith(
        "gave up after 2 attempts: cannot connect talking to openai-compatible provider 'gpu'"
    )
    assert caught.value.status is None


@pytest.mark.parametrize(
    "kind", ["slow", "reset", "malformed", "500", "429"], ids=lambda k: f"{k} fault is retried"
)
def test_each_fault_kind_is_retried(waits: Waits, kind: str) -> None:
    """Every injected fault kind is retryable and the call still succeeds."""
    faults = Faults(rate=0.5, kinds=(kind,), seed=2, slow_seconds=1.0)
    # Only the slow fault needs a short client timeout; elsewhere a loaded machine must not
    # turn an ordinary answer into a timeout.
    timeout = 0.25 if kind == "slow" else 5.0
    with (
        FakeOpenAI(faults=faults) as fake,
        _open(_settings(fake.base_url, timeout=timeout, max_retries=20), waits) as client,
    ):
        results = [client.submit(f"task {n}", {}, f"key-{n}").result for n in range(4)]
    assert all(result is not None for result in results)
    assert any(r.fault == kind for r in fake.requests)
    # Every request beyond the four answered ones was a retry; each fault caused one.
    assert len(waits) == len(fake.requests) - 4 >= sum(1 for r in fake.requests if r.fault)


def test_200_with_error_body_is_a_failure(waits: Waits) -> None:
    """OpenRouter's 200 carrying an error: retryable code retried, other codes terminal."""
    with FakeOpenAI() as fake:
        fake.script(
            Reply(200, {"error": {"code": 502, "message": "model down"}}, times=1),
            Reply(200, {"error": {"code": 400, "message": "context too long"}}, times=1),
        )
        with pytest.raises(ProviderHTTPError) as caught:
            _submit(fake.base_url, waits)
    assert caught.value.terminal and caught.value.status == 400
    assert "context too long" in str(caught.value)
    assert len(fake.requests) == 2


# -- idempotency ------------------------------------------------------------------------------


def test_idempotency_key_identical_across_retries(waits: Waits) -> None:
    """Every attempt of one submit carries the same Idempotency-Key."""
    with FakeAnthropic(api_key="sk-ant-test-0001") as fake:
        fake.script(Reply(529, anthropic_error("overloaded_error", "overloaded"), times=3))
        settings = _settings(fake.base_url, "anthropic", model="claude-sonnet-4-5")
        with _open(settings, waits, "sk-ant-test-0001") as client:
            client.submit("hello", {}, "task-7:claim-1")
    keys = [r.headers.get("idempotency-key") for r in fake.requests]
    assert keys == ["task-7:claim-1"] * 4
    assert fake.requests[-1].headers["anthropic-version"] == "2023-06-01"


def test_job_api_one_job_per_key_under_faults(waits: Waits) -> None:
    """Under every fault kind the job API creates exactly one job per idempotency key."""
    faults = Faults(rate=0.3, seed=11, slow_seconds=0.3)
    with FakeJobApi(faults=faults, polls_to_complete=2) as fake:
        settings = _settings(fake.base_url, "job-api", timeout=0.1, max_retries=30)
        with _open(settings, waits) as client:
            keys = [f"task-{n}:claim-1" for n in range(30)]
            jobs = {key: client.submit(f"prompt {key}", {"task": key}, key).job_id for key in keys}
            again = {key: client.submit(f"prompt {key}", {"task": key}, key).job_id for key in keys}
            finished = [_poll_until_done(client, job_id) for job_id in jobs.values()]
    assert again == jobs
    assert fake.jobs_created == 30 and fake.distinct_keys == 30
    assert len(set(jobs.values())) == 30
    assert all(s.state == "completed" and s.result is not None for s in finished)
    faulted = {r.fault for r in fake.requests if r.fault}
    assert faulted == {"500", "429", "slow", "reset", "malformed"}


def test_job_api_concurrent_duplicates_make_one_job(waits: Waits) -> None:
    """The same key submitted from several threads at once still yields one job."""
    faults = Faults(rate=0.2, kinds=("reset", "malformed"), seed=3)
    with (
        FakeJobApi(faults=faults) as fake,
        _open(_settings(fake.base_url, "job-api", max_retries=20), waits) as client,
    ):
        keys = [f"k{n % 10}" for n in range(40)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = list(pool.map(lambda k: client.submit(f"p {k}", {}, k).job_id, keys))
    assert fake.jobs_created == 10
    assert len(set(ids)) == 10


def test_job_api_lifecycle_and_failure(waits: Waits) -> None:
    """Jobs go queued, running, completed; a failing job reports its reason."""
    with (
        FakeJobApi(
            polls_to_complete=3, fail=lambda p: "model refused" if "bad" in p else None
        ) as fake,
        _open(_settings(fake.base_url, "job-api"), waits) as client,
    ):
        good = client.submit("good task", {"title": "x"}, "k-good")
        bad = client.submit("bad task", {}, "k-bad")
        states = [client.poll(good.job_id).state for _ in range(3)]
        failed = _poll_until_done(client, bad.job_id)
        done = client.poll(good.job_id)
    assert states == ["queued", "running", "completed"]
    assert failed == JobStatus("failed", None, "model refused")
    assert done.result is not None and done.result.provider == "fake-llm"
    assert done.result.cost_usd == pytest.approx(0.0123)
    assert done.result.cost_source == "provider"
    assert fake.requests_to("POST")[0].body["metadata"] == {"title": "x"}


def test_job_api_unknown_job_is_terminal(waits: Waits) -> None:
    """Polling a job the server does not know is a terminal 404."""
    with FakeJobApi() as fake, _open(_settings(fake.base_url, "job-api"), waits) as client:
        with pytest.raises(ProviderHTTPError) as caught:
            client.poll("job-999999")
        with pytest.raises(ProviderError):
            client.poll("../../etc/passwd")
    assert caught.value.terminal and caught.value.status == 404


def test_sync_results_are_remembered(waits: Waits) -> None:
    """A synchronous provider answers a repeated key from memory and polls by synthetic id."""
    with FakeOpenAI() as fake, _open(_settings(fake.base_url), waits) as client:
        first = client.submit("hello", {}, "key-1")
        second = client.submit("hello", {}, "key-1")
        polled = client.poll(first.job_id)
        lost = client.poll("sync-0000")
    assert client.synchronous
    assert first == second and first.job_id.startswith("sync-")
    assert fake.completions == 1
    assert polled.state == "completed" and polled.result == first.result
    assert lost.state == "failed" and lost.error is not None and "in memory" in lost.error


# -- cost ----------------------------------------------------------------------------------------


def test_anthropic_cost_includes_cache_tokens(waits: Waits) -> None:
    """Anthropic cost adds cache writes and reads at their own rates to input and output."""
    with FakeAnthropic(
        api_key="sk-ant-test-0001", cache_read_tokens=10_000, cache_write_tokens=2_000
    ) as fake:
        settings = _settings(fake.base_url, "anthropic", model="claude-sonnet-4-5")
        with _open(settings, waits, "sk-ant-test-0001") as client:
            result = client.submit("x" * 4000, {}, "key-1").result
    assert result is not None
    assert (result.input_tokens, result.output_tokens) == (1000, 51)
    assert (result.cache_read_tokens, result.cache_write_tokens) == (10_000, 2_000)
    expected = (1000 * 3.0 + 2000 * 3.75 + 10_000 * 0.30 + 51 * 15.0) / 1e6
    assert result.cost_usd == pytest.approx(expected)
    assert result.cost_source == "price_table"
    assert result.request_id == "req_fake_1"


def test_openai_cost_subtracts_cached_tokens(waits: Waits) -> None:
    """OpenAI prompt tokens include cached ones, billed at the cache-read rate."""
    with FakeOpenAI(cached_tokens=400, reply=lambda _p: "y" * 800) as fake:
        result = _submit(fake.base_url, waits, prompt="x" * 2400, model="gpt-4.1").result
    assert result is not None
    assert (result.input_tokens, result.cache_read_tokens, result.output_tokens) == (600, 400, 200)
    assert result.cost_usd == pytest.approx((600 * 2.0 + 400 * 0.5 + 200 * 8.0) / 1e6)
    assert format_cost(result.cost_usd, result.cost_source) == "$0.0030"


def test_provider_reported_cost_wins(waits: Waits) -> None:
    """OpenRouter's usage.cost is used instead of the price table."""
    with FakeOpenAI(usage_cost=0.5) as fake:
        result = _submit(fake.base_url, waits, model="gpt-4.1").result
    assert result is not None
    assert (result.cost_usd, result.cost_source) == (0.5, "provider")


def test_config_price_override_is_used(waits: Waits) -> None:
    """A configured price prices a model the default table does not know."""
    prices = {"qwen3-coder": PriceConfig(input=0, output=0)}
    with FakeOpenAI() as fake:
        settings = _settings(fake.base_url, model="qwen3-coder", prices=prices)
        with _open(settings, waits) as client:
            result = client.submit("hello", {}, "key-1").result
    assert result is not None
    assert (result.cost_usd, result.cost_source) == (0.0, "price_table")
    assert format_cost(result.cost_usd, result.cost_source) == "$0.0000"


@pytest.mark.parametrize(
    ("model", "include_usage"),
    [("my-local-model", True), ("gpt-4.1", False)],
    ids=["an unpriced model costs unknown", "a reply without usage costs unknown"],
)
def test_unknown_cost(waits: Waits, model: str, include_usage: bool) -> None:
    """Without a price or without usage the cost is unknown, never $0."""
    with FakeOpenAI(include_usage=include_usage) as fake:
        result = _submit(fake.base_url, waits, model=model).result
    assert result is not None
    assert (result.cost_usd, result.cost_source) == (None, "unknown")
    assert format_cost(result.cost_usd, result.cost_source) == "unknown"


# -- configuration and secrets -------------------------------------------------------------------


def test_make_client_refuses_incomplete_config() -> None:
    """Anthropic without a key and chat kinds without a model are configuration errors."""
    with pytest.raises(ConfigError, match="needs an API key"):
        make_client(_settings("http://127.0.0.1:9", "anthropic", model="m"), lambda _p: None)
    with pytest.raises(ConfigError, match="needs a model"):
        make_client(_settings("http://127.0.0.1:9/v1", model=None), lambda _p: None)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _failing_calls(canary: str) -> list[Callable[[Waits], None]]:
    """Calls that fail in different ways while holding the canary key."""

    def echoed_401(waits: Waits) -> None:
        with FakeOpenAI(api_key="sk-other-key-0000") as fake:
            fake.script(
                Reply(
                    401,
                    openai_error(f"Incorrect API key provided: {canary}", "auth"),
                    when=with_key(canary),
                )
            )
            with _open(_settings(fake.base_url), waits, canary) as client:
                client.submit("hello", {}, "k")

    def echoed_500(waits: Waits) -> None:
        with FakeAnthropic(api_key=canary) as fake:
            fake.script(Reply(500, anthropic_error("api_error", f"{canary} {canary}")))
            settings = _settings(
                fake.base_url, "anthropic", model="claude-haiku-4-5", max_retries=2
            )
            with _open(settings, waits, canary) as client:
                client.submit("hello", {}, "k")

    def refused(waits: Waits) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        settings = _settings(f"http://127.0.0.1:{port}", "job-api", max_retries=1)
        with _open(settings, waits, canary) as client:
            client.submit("hello", {}, "k")

    def faulty_jobs(waits: Waits) -> None:
        with FakeJobApi(api_key=canary, faults=Faults(rate=0.5, seed=1, slow_seconds=0.4)) as fake:
            settings = _settings(fake.base_url, "job-api", timeout=0.2, max_retries=20)
            with _open(settings, waits, canary) as client:
                job = client.submit("hello", {}, "k").job_id
                _poll_until_done(client, job)
            fake.script(Reply(402, {"error": f"no credits for {canary}"}))
            with _open(settings, waits, canary) as client:
                client.submit("hello", {}, "k2")

    return [echoed_401, echoed_500, refused, faulty_jobs]


def test_canary_key_never_leaks(
    tmp_path: Path, waits: Waits, caplog: pytest.LogCaptureFixture
) -> None:
    """A key loaded from a 0600 file appears in no error message, traceback or log line."""
    canary = f"sk-CANARY-{uuid.uuid4()}"
    key_file = tmp_path / "key"
    key_file.write_text(canary + "\n")
    os.chmod(key_file, 0o600)
    assert resolve_key(None, key_file, {}) == canary
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    for call in _failing_calls(canary):
        try:
            call(waits)
        except ProviderError as exc:
            errors.append(exc)
    assert len(errors) == 4
    for error in errors:
        for link in _chain(error):
            assert canary not in str(link) and canary not in repr(link)
        assert canary not in "".join(traceback.format_exception(error))
    assert "***" in str(errors[0])  # the echoed key was scrubbed, not just absent
    assert caplog.records, "the calls should have logged something"
    assert canary not in caplog.text


# -- pure retry decisions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (200, {"choices": []}, "ok"),
        (409, None, "retry"),
        (529, None, "retry"),
        (501, None, "terminal"),
        (429, {"error": {"type": "rate_limit_error"}}, "retry"),
        (429, {"error": {"code": "insufficient_quota"}}, "terminal"),
        (200, {"object": "error", "code": 503, "message": "x"}, "retry"),
    ],
    ids=[
        "2xx is ok",
        "409 conflict is retried",
        "529 overloaded is retried",
        "501 is terminal",
        "plain 429 is retried",
        "429 insufficient_quota is terminal",
        "vLLM-shaped 503 inside a 200 is retried",
    ],
)
def test_classify(status: int, body: object, verdict: str) -> None:
    """Responses are classified as ok, retryable or terminal."""
    assert classify(status, body, error_in_body=True) == verdict


def test_parse_retry_after_forms() -> None:
    """retry-after accepts milliseconds, seconds and an HTTP date; junk is ignored."""
    now = 1_700_000_000.0
    assert parse_retry_after({"retry-after-ms": "1500"}, now) == 1.5
    assert parse_retry_after({"retry-after": "2"}, now) == 2.0
    assert parse_retry_after({"retry-after": "Tue, 14 Nov 2023 22:13:27 GMT"}, now) == 7.0
    assert parse_retry_after({"retry-after": "soon"}, now) is None
    assert parse_retry_after({"retry-after": "-1"}, now) is None


def test_backoff_is_full_jitter_and_capped() -> None:
    """Backoff is rand x min(cap, base x 2^n)."""
    assert backoff_delay(0, 0.5, 8.0, 0.5) == 0.25
    assert backoff_delay(3, 0.5, 8.0, 1.0) == 4.0
    assert backoff_delay(10, 0.5, 8.0, 1.0) == 8.0
    assert backoff_delay(5000, 0.5, 8.0, 0.0) == 0.0
