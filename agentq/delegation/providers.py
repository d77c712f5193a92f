"""Provider clients: one interface over a job API, OpenAI-compatible chat and Anthropic.

Every client has ``submit`` (with an idempotency key that is the same for every retry)
and ``poll``. The job API is asynchronous: ``submit`` returns a job id and ``poll``
follows it. Chat-style APIs are synchronous: ``submit`` returns the result at once with
a synthetic job id derived from the idempotency key, and ``poll`` answers from memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, Self
from urllib.parse import quote

from agentq.core.errors import ConfigError, ProviderError
from agentq.delegation.http import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_CAP,
    HttpClient,
    JsonResponse,
    ProviderHTTPError,
    RetryPolicy,
    Sleep,
    Transport,
)
from agentq.delegation.pricing import (
    CostSource,
    PriceLike,
    anthropic_tokens,
    cost_for,
    openai_tokens,
)

logger = logging.getLogger(__name__)

ProviderKind = Literal["job-api", "openai-compatible", "anthropic"]
JobState = Literal["queued", "running", "completed", "failed"]

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 8192
SYNC_JOB_PREFIX = "sync-"
MAX_REMEMBERED_RESULTS = 1000
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
_JOB_STATES: Mapping[str, JobState] = {
    "queued": "queued",
    "pending": "queued",
    "running": "running",
    "in_progress": "running",
    "completed": "completed",
    "succeeded": "completed",
    "failed": "failed",
    "error": "failed",
    "cancelled": "failed",
    "canceled": "failed",
    "expired": "failed",
}


class ProviderSettings(Protocol):
    """The fields of ``agentq.config.ProviderConfig`` a client needs."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def base_url(self) -> str: ...
    @property
    def model(self) -> str | None: ...
    @property
    def api_key_env(self) -> str | None: ...
    @property
    def api_key_file(self) -> Path | None: ...
    @property
    def timeout(self) -> float: ...
    @property
    def max_retries(self) -> int: ...
    @property
    def retry_after_cap(self) -> float: ...
    @property
    def prices(self) -> Mapping[str, PriceLike]: ...


KeyResolver = Callable[[ProviderSettings], str | None]


@dataclass(frozen=True)
class JobResult:
    """A finished job. Token counts are None when the provider did not report them;
    ``input_tokens`` counts uncached input only (cache reads/writes are separate)."""

    text: str
    provider: str
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    cache_write_tokens: int | None
    cost_usd: float | None
    cost_source: CostSource
    request_id: str | None
    attempts: int


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands; ``result`` when completed, ``error`` (one line) when failed."""

    state: JobState
    result: JobResult | None = None
    error: str | None = None


@dataclass(frozen=True)
class Submission:
    """What ``submit`` returns: the job id, and the result at once for synchronous providers."""

    job_id: str
    result: JobResult | None = None


class ProviderClient(Protocol):
    """The interface the delegation manager uses for every provider."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def synchronous(self) -> bool: ...

    def submit(
        self, prompt: str, metadata: Mapping[str, str], idempotency_key: str
    ) -> Submission: ...
    def poll(self, job_id: str) -> JobStatus: ...
    def close(self) -> None: ...


def sync_job_id(provider: str, idempotency_key: str) -> str:
    """The synthetic job id of a synchronous call: stable for (provider, key)."""
    digest = hashlib.sha256(f"{provider}\0{idempotency_key}".encode()).hexdigest()
    return f"{SYNC_JOB_PREFIX}{digest[:32]}"


def _check_job_id(job_id: str, client: _Base) -> str:
    # Job ids end up in marker files and URL paths: refuse anything unusual.
    if not _JOB_ID.match(job_id):
        raise ProviderError(
            f"unusable job id {job_id[:60]!r} for {client.kind} provider '{client.name}'",
            provider=client.name,
            terminal=True,
        )
    return job_id


def _shape_error(client: _Base, what: str, response: JsonResponse) -> ProviderHTTPError:
    return ProviderHTTPError(
        f"unexpected response from {client.kind} provider '{client.name}': {what}",
        provider=client.name,
        status=response.status,
        terminal=True,
        attempts=response.attempts,
        request_id=response.request_id,
    )


class _Base:
    kind: str = ""
    synchronous: bool = False

    def __init__(self, name: str, http: HttpClient) -> None:
        self.name = name
        self._http = http

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class JobApiClient(_Base):
    """An asynchronous job API: ``POST /jobs`` then ``GET /jobs/{id}`` until done."""

    kind = "job-api"
    synchronous = False

    def submit(self, prompt: str, metadata: Mapping[str, str], idempotency_key: str) -> Submission:
        """Create (or find, by idempotency key) the job; returns its id."""
        payload = {"prompt": prompt, "metadata": dict(metadata), "idempotency_key": idempotency_key}
        response = self._http.request_json(
            "POST", "jobs", body=payload, idempotency_key=idempotency_key
        )
        job_id = response.body.get("id") if isinstance(response.body, Mapping) else None
        if not isinstance(job_id, str | int) or isinstance(job_id, bool):
            raise _shape_error(self, "no job id", response)
        logger.info("job submitted", extra={"provider": self.name, "job_id": str(job_id)})
        return Submission(_check_job_id(str(job_id), self))

    def poll(self, job_id: str) -> JobStatus:
        """Ask where a job stands."""
        _check_job_id(job_id, self)
        response = self._http.request_json("GET", f"jobs/{quote(job_id, safe='')}")
        body = response.body
        if not isinstance(body, Mapping):
            raise _shape_error(self, "job status is not an object", response)
        state = _JOB_STATES.get(str(body.get("status", "")).lower())
        if state is None:
            raise _shape_error(
                self, f"unknown job status {str(body.get('status'))[:40]!r}", response
            )
        if state == "failed":
            error = body.get("error")
            return JobStatus("failed", None, str(error) if error else "job failed without a reason")
        if state != "completed":
            return JobStatus(state)
        return JobStatus("completed", self._result(body, response))

    def _result(self, body: Mapping[str, Any], response: JsonResponse) -> JobResult:
        text = body.get("result")
        if not isinstance(text, str):
            text = "" if text is None else json.dumps(text)
        cost = body.get("cost_usd")
        cost_usd = None
        if isinstance(cost, int | float) and not isinstance(cost, bool) and cost >= 0:
            cost_usd = float(cost)
        model = body.get("model")
        provider = body.get("provider")
        return JobResult(
            text=text,
            provider=provider if isinstance(provider, str) and provider else self.name,
            model=model if isinstance(model, str) else None,
            input_tokens=None,
            output_tokens=None,
            cache_read_tokens=None,
            cache_write_tokens=None,
            cost_usd=cost_usd,
            cost_source="unknown" if cost_usd is None else "provider",
            request_id=response.request_id,
            attempts=response.attempts,
        )


class _SyncBase(_Base):
    """A chat-style API: one call returns the answer; results are kept in memory by job id."""

    synchronous = True

    def __init__(
        self,
        name: str,
        http: HttpClient,
        model: str,
        prices: Mapping[str, PriceLike],
        *,
        system_prompt: str | None = None,
    ) -> None:
        super().__init__(name, http)
        self.model = model
        self._prices = prices
        self._system_prompt = system_prompt
        self._lock = threading.Lock()
        self._results: OrderedDict[str, JobResult] = OrderedDict()

    def submit(self, prompt: str, metadata: Mapping[str, str], idempotency_key: str) -> Submission:
        """Run the call (or return the remembered result for this key); ``metadata`` is not sent."""
        job_id = sync_job_id(self.name, idempotency_key)
        with self._lock:
            remembered = self._results.get(job_id)
        if remembered is not None:
            return Submission(job_id, remembered)
        result = self._call(prompt, idempotency_key)
        with self._lock:
            self._results[job_id] = result
            while len(self._results) > MAX_REMEMBERED_RESULTS:
                self._results.popitem(last=False)
        return Submission(job_id, result)

    def poll(self, job_id: str) -> JobStatus:
        """Return a remembered result; a synthetic id unknown here was lost with a restart."""
        with self._lock:
            result = self._results.get(job_id)
        if result is not None:
            return JobStatus("completed", result)
        return JobStatus(
            "failed",
            None,
            f"no result for job {job_id[:60]!r}: {self.kind} provider '{self.name}' is "
            "synchronous and keeps results only in memory",
        )

    def _call(self, prompt: str, idempotency_key: str) -> JobResult:
        raise NotImplementedError

    def _finish(self, text: str, body: Mapping[str, Any], response: JsonResponse) -> JobResult:
        """Build the result: served model, normalised tokens, cost and its source."""
        model = _str_or_none(body.get("model")) or self.model
        usage = body.get("usage")
        formula: Literal["openai", "anthropic"] = (
            "anthropic" if self.kind == "anthropic" else "openai"
        )
        usage_map = usage if isinstance(usage, Mapping) else None
        tokens: tuple[int | None, int | None, int | None, int | None] = (None, None, None, None)
        if usage_map is not None:
            counter = anthropic_tokens if formula == "anthropic" else openai_tokens
            tokens = counter(usage_map)
        cost, source = cost_for(usage_map, (self.model, model), self._prices, formula)
        return JobResult(
            text=text,
            provider=self.name,
            model=model,
            input_tokens=tokens[0],
            output_tokens=tokens[1],
            cache_read_tokens=tokens[2],
            cache_write_tokens=tokens[3],
            cost_usd=cost,
            cost_source=source,
            request_id=response.request_id or _str_or_none(body.get("id")),
            attempts=response.attempts,
        )


class OpenAICompatibleClient(_SyncBase):
    """``POST {base}/chat/completions`` (OpenAI, vLLM, Ollama, OpenRouter, Gemini compat)."""

    kind = "openai-compatible"

    def _call(self, prompt: str, idempotency_key: str) -> JobResult:
        messages = [{"role": "user", "content": prompt}]
        if self._system_prompt:
            messages.insert(0, {"role": "system", "content": self._system_prompt})
        payload = {"model": self.model, "messages": messages, "stream": False}
        response = self._http.request_json(
            "POST",
            "chat/completions",
            body=payload,
            idempotency_key=idempotency_key,
            error_in_body=True,
        )
        body = response.body
        choices = body.get("choices") if isinstance(body, Mapping) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            raise _shape_error(self, "no choices", response)
        message = choices[0].get("message")
        content = message.get("content") if isinstance(message, Mapping) else None
        finish = choices[0].get("finish_reason")
        if finish not in (None, "stop"):
            logger.warning(
                "completion ended early", extra={"provider": self.name, "reason": finish}
            )
        return self._finish(_openai_text(content), body, response)


def _openai_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, Mapping)]
        return "".join(p for p in parts if isinstance(p, str))
    return ""


class AnthropicClient(_SyncBase):
    """``POST {base}/v1/messages`` with ``x-api-key`` and ``anthropic-version``."""

    kind = "anthropic"

    def __init__(
        self,
        name: str,
        http: HttpClient,
        model: str,
        prices: Mapping[str, PriceLike],
        *,
        system_prompt: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        super().__init__(name, http, model, prices, system_prompt=system_prompt)
        self.max_tokens = max_tokens

    def _call(self, prompt: str, idempotency_key: str) -> JobResult:
        payload: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": [{"role": "user", "content": prompt}],
        }
        if self._system_prompt:
            payload["system"] = self._system_prompt
        response = self._http.request_json(
            "POST", "v1/messages", body=payload, idempotency_key=idempotency_key, error_in_body=True
        )
        body = response.body
        blocks = body.get("content") if isinstance(body, Mapping) else None
        if not isinstance(blocks, list):
            raise _shape_error(self, "no content", response)
        text = "".join(
            str(b.get("text", ""))
            for b in blocks
            if isinstance(b, Mapping) and b.get("type") == "text"
        )
        if body.get("stop_reason") == "max_tokens":
            logger.warning("message cut at max_tokens", extra={"provider": self.name})
        return self._finish(text, body, response)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def make_client(
    provider: ProviderSettings,
    key_resolver: KeyResolver,
    transport: Transport | None = None,
    *,
    sleep: Sleep = time.sleep,
    backoff_base: float = DEFAULT_BACKOFF_BASE,
    backoff_cap: float = DEFAULT_BACKOFF_CAP,
    system_prompt: str | None = None,
) -> ProviderClient:
    """Build the client for one configured provider.

    ``key_resolver`` loads the API key (e.g. ``lambda p: resolve_key(p.api_key_env,
    p.api_key_file, os.environ)``). ``transport``, ``sleep`` and ``backoff_base`` are for
    tests and for an interruptible daemon (``sleep=stop_event.wait``).

    Raises:
        ConfigError: unknown kind, missing model, or a key the kind requires is missing.
    """
    kind = provider.kind
    if kind not in ("job-api", "openai-compatible", "anthropic"):
        raise ConfigError([f"provider '{provider.name}': unknown kind {kind!r}"])
    if kind != "job-api" and not provider.model:
        raise ConfigError([f"provider '{provider.name}': kind {kind} needs a model"])
    key = key_resolver(provider)
    if kind == "anthropic" and not key:
        raise ConfigError([f"provider '{provider.name}': kind anthropic needs an API key"])
    http = HttpClient(
        provider=provider.name,
        kind=kind,
        base_url=provider.base_url,
        timeout=provider.timeout,
        headers=_auth_headers(kind, key),
        secrets=(key,) if key else (),
        policy=RetryPolicy(
            max_retries=provider.max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            retry_after_cap=provider.retry_after_cap,
        ),
        transport=transport,
        sleep=sleep,
    )
    if kind == "job-api":
        return JobApiClient(provider.name, http)
    model = provider.model or ""
    if kind == "anthropic":
        return AnthropicClient(
            provider.name, http, model, provider.prices, system_prompt=system_prompt
        )
    return OpenAICompatibleClient(
        provider.name, http, model, provider.prices, system_prompt=system_prompt
    )


def _auth_headers(kind: str, key: str | None) -> dict[str, str]:
    if kind == "anthropic":
        return {"x-api-key": key or "", "anthropic-version": ANTHROPIC_VERSION}
    return {"Authorization": f"Bearer {key}"} if key else {}
