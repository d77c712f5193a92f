"""The HTTP adapter for remote providers: the only module importing tenacity, and httpx for them.

(Webhook notifications have their own small httpx adapter, :mod:`agentq.daemon.notify.webhook`.)

One retry policy for every provider. Retried: HTTP 408/409/429/500/502/503/504/529,
transport errors (connect/read timeouts, resets, protocol errors) and malformed JSON
on a 2xx. Waits use full-jitter exponential backoff, or the server's ``retry-after-ms``
/ ``retry-after`` up to ``retry_after_cap``; a longer demand stops at once with a
terminal error so the fallback chain takes over. Terminal: 400, 401, 402, 403, 404,
413, 422 and quota/spend-cap errors (see :mod:`agentq.delegation.retry`).

httpx errors are translated once, here, into :class:`ProviderHTTPError`: one line,
with the provider's kind and name, never the API key.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import tenacity

from agentq.core.errors import ProviderError
from agentq.core.secrets import redact
from agentq.delegation.retry import (
    backoff_delay,
    classify,
    describe_error,
    error_detail,
    one_line,
    parse_retry_after,
)

logger = logging.getLogger(__name__)

Transport = httpx.BaseTransport
Sleep = Callable[[float], None]

DEFAULT_MAX_RETRIES = 5
DEFAULT_BACKOFF_BASE = 0.5
DEFAULT_BACKOFF_CAP = 8.0
DEFAULT_RETRY_AFTER_CAP = 120.0
MAX_CONNECT_TIMEOUT = 10.0
REQUEST_ID_HEADERS = ("request-id", "x-request-id")
# Transport errors that another attempt cannot fix (bad URL scheme, our own bad request).
_NOT_RETRYABLE = (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.ProxyError)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry; ``max_retries`` counts retries, not attempts."""

    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_cap: float = DEFAULT_BACKOFF_CAP
    retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP


@dataclass(frozen=True)
class JsonResponse:
    """A successful response: parsed JSON body, lower-cased headers, attempts it took."""

    status: int
    body: Any
    headers: Mapping[str, str]
    request_id: str | None
    attempts: int


class ProviderHTTPError(ProviderError):
    """A provider call failed; carries the attempts made and whether retries ran out.

    ``terminal`` means this provider will not serve the request soon (bad key, quota,
    a refused request, a too-long retry-after): go down the fallback chain.
    ``exhausted`` means every retry failed on errors that may clear later.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        terminal: bool = False,
        attempts: int = 1,
        request_id: str | None = None,
        exhausted: bool = False,
    ) -> None:
        super().__init__(message, provider=provider, status=status, terminal=terminal)
        self.attempts = attempts
        self.request_id = request_id
        self.exhausted = exhausted

    @property
    def retries(self) -> int:
        """Attempts beyond the first."""
        return max(0, self.attempts - 1)


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    body: Mapping[str, Any] | None
    headers: Mapping[str, str]
    error_in_body: bool


class _Retryable(Exception):
    """Internal signal to tenacity: this attempt failed in a way worth retrying."""

    def __init__(
        self, detail: str, status: int | None, retry_after: float | None, request_id: str | None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
        self.request_id = request_id


class HttpClient:
    """JSON over HTTP to one provider, with the shared retry policy and error translation."""

    def __init__(
        self,
        *,
        provider: str,
        kind: str,
        base_url: str,
        timeout: float,
        headers: Mapping[str, str] | None = None,
        secrets: Sequence[str] = (),
        policy: RetryPolicy | None = None,
        transport: Transport | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.kind = kind
        self.policy = policy or RetryPolicy()
        self._secrets = tuple(s for s in secrets if s)
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._clock = clock
        self._client = httpx.Client(
            base_url=base_url,
            headers=dict(headers or {}),
            timeout=httpx.Timeout(timeout, connect=min(timeout, MAX_CONNECT_TIMEOUT)),
            transport=transport,
            follow_redirects=False,
        )
        self._timeout = timeout

    @property
    def _who(self) -> str:
        return f"{self.kind} provider '{self.provider}'"

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def request_json(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        error_in_body: bool = False,
    ) -> JsonResponse:
        """Send a request with retries and return the parsed JSON of a 2xx response.

        The same ``Idempotency-Key`` goes with every attempt. ``error_in_body`` treats a
        2xx whose body carries an error as a failure (OpenRouter reports errors that way).

        Raises:
            ProviderHTTPError: terminal, or retries exhausted (``exhausted=True``).
        """
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        request = _Request(method, path, body, headers, error_in_body)
        attempts = 0

        def attempt() -> JsonResponse:
            nonlocal attempts
            attempts += 1
            return self._attempt(request, attempts)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.policy.max_retries + 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Retryable),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Retryable as exc:
            plural = "attempt" if attempts == 1 else "attempts"
            raise ProviderHTTPError(
                f"gave up after {attempts} {plural}: {exc.detail}",
                provider=self.provider,
                status=exc.status,
                attempts=attempts,
                request_id=exc.request_id,
                exhausted=True,
            ) from None

    def _attempt(self, request: _Request, number: int) -> JsonResponse:
        try:
            response = self._client.request(
                request.method, request.path, json=request.body, headers=request.headers
            )
        except httpx.InvalidURL as exc:
            raise self._terminal(f"invalid URL for {self._who}: {exc}", None, number) from None
        except httpx.RequestError as exc:
            detail = self._transport_detail(exc)
            if isinstance(exc, _NOT_RETRYABLE):
                raise self._terminal(detail, None, number) from None
            logger.debug("%s (attempt %d)", detail, number, extra={"provider": self.provider})
            raise _Retryable(detail, None, None, None) from None
        return self._judge(response, request.error_in_body, number)

    def _judge(self, response: httpx.Response, error_in_body: bool, number: int) -> JsonResponse:
        status = response.status_code
        request_id = next(
            (response.headers[h] for h in REQUEST_ID_HEADERS if h in response.headers), None
        )
        logger.debug(
            "%s %s -> HTTP %d (attempt %d)",
            response.request.method,
            response.request.url.path,
            status,
            number,
            extra={"provider": self.provider, "request_id": request_id},
        )
        try:
            parsed: Any = json.loads(response.content)
        except ValueError as exc:
            if 200 <= status < 300:
                detail = self._clean(f"malformed JSON in HTTP {status} from {self._who}: {exc}")
                raise _Retryable(detail, status, None, request_id) from None
            parsed = None
        verdict = classify(status, parsed, error_in_body=error_in_body)
        if verdict == "ok":
            headers = {k.lower(): v for k, v in response.headers.items()}
            return JsonResponse(status, parsed, headers, request_id, number)
        raise self._failure(verdict == "terminal", parsed, response, number, request_id)

    def _failure(
        self,
        terminal: bool,
        parsed: object,
        response: httpx.Response,
        number: int,
        request_id: str | None,
    ) -> Exception:
        """The exception for a failed response: terminal, or retryable with its wait."""
        effective = response.status_code
        if 200 <= effective < 300:
            # An error inside a 2xx (OpenRouter) may carry the real status as its code.
            found = error_detail(parsed)
            effective = found.status if found and found.status else effective
        detail = self._status_detail(effective, parsed, response)
        if terminal:
            return self._terminal(detail, effective, number, request_id)
        wait = parse_retry_after(response.headers, self._clock())
        if wait is not None and wait > self.policy.retry_after_cap:
            cap = self.policy.retry_after_cap
            detail = f"{detail}; retry-after {wait:g} s exceeds the {cap:g} s cap"
            return self._terminal(detail, effective, number, request_id)
        return _Retryable(detail, effective, wait, request_id)

    def _status_detail(self, status: int, parsed: object, response: httpx.Response) -> str:
        fallback = response.reason_phrase or "no details"
        text = response.text.strip() if parsed is None else ""
        if text and not text.startswith("<"):
            fallback = text  # a plain-text error body says more than the reason phrase
        return self._clean(f"HTTP {status} from {self._who}: {describe_error(parsed, fallback)}")

    def _transport_detail(self, exc: httpx.RequestError) -> str:
        if isinstance(exc, httpx.ConnectTimeout):
            what = "connect timeout"
        elif isinstance(exc, httpx.TimeoutException):
            what = f"timed out after {self._timeout:g} s"
        elif isinstance(exc, httpx.RemoteProtocolError):
            what = "connection closed without a valid response"
        elif isinstance(exc, httpx.ConnectError):
            what = "cannot connect"
        elif isinstance(exc, httpx.ReadError | httpx.WriteError):
            what = "connection reset"
        else:
            what = type(exc).__name__
        reason = "" if isinstance(exc, httpx.TimeoutException) else str(exc).strip()
        suffix = f": {reason}" if reason else ""
        return self._clean(f"{what} talking to {self._who}{suffix}")

    def _terminal(
        self, detail: str, status: int | None, number: int, request_id: str | None = None
    ) -> ProviderHTTPError:
        return ProviderHTTPError(
            self._clean(detail),
            provider=self.provider,
            status=status,
            terminal=True,
            attempts=number,
            request_id=request_id,
        )

    def _clean(self, text: str) -> str:
        """One line, without our key (even when a server echoes it back)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return one_line(redact(text), limit=500)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        outcome = state.outcome
        failure = outcome.exception() if outcome is not None else None
        if isinstance(failure, _Retryable) and failure.retry_after is not None:
            return failure.retry_after
        policy = self.policy
        return backoff_delay(
            state.attempt_number - 1, policy.backoff_base, policy.backoff_cap, self._rng.random()
        )

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        outcome = state.outcome
        failure = outcome.exception() if outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "provider call failed, retry %d/%d in %.2f s: %s",
            state.attempt_number,
            self.policy.max_retries,
            delay,
            failure.detail if isinstance(failure, _Retryable) else "unknown failure",
            extra={"provider": self.provider},
        )
