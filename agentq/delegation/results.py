"""What the delegation manager records and reports about a job, as data.

The outcomes the manager hands the daemon (:func:`fallback_outcome`, :func:`failed_outcome`),
a provider's answer as the control record keeps it (:func:`encode_result`,
:func:`decode_result`), the footer rows of a finished job (:func:`result_details`), a
failure in one line without secrets (:func:`describe_failure`), and the delegation of a
task read back from its control record or, when that was lost, its marker
(:func:`intent_of`).
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from typing import Any

from agentq.core.errors import ProviderError
from agentq.core.secrets import redact
from agentq.delegation.providers import JobResult
from agentq.queue.jobs import Job, Outcome, OutcomeStatus
from agentq.queue.marker import read_info
from agentq.queue.records import DelegationIntent, DelegationPhase

logger = logging.getLogger(__name__)


def describe_failure(failure: BaseException) -> str:
    """A failure in one line, redacted."""
    if isinstance(failure, ProviderError):
        return redact(str(failure))
    return redact(f"{type(failure).__name__}: {failure}")


def result_details(job_id: str | None, key: str, result: JobResult) -> tuple[tuple[str, str], ...]:
    """The footer rows of a finished job (those the provider reported)."""
    rows: list[tuple[str, str | int | None]] = [
        ("model", result.model),
        ("job id", job_id),
        ("input tokens", result.input_tokens),
        ("output tokens", result.output_tokens),
        ("cache read tokens", result.cache_read_tokens),
        ("cache write tokens", result.cache_write_tokens),
        ("cost source", result.cost_source),
        ("provider attempts", result.attempts),
        ("request id", result.request_id),
        ("idempotency key", key),
    ]
    return tuple((name, str(value)) for name, value in rows if value is not None)


def encode_result(result: JobResult | None) -> dict[str, Any] | None:
    """A synchronous provider's answer as the control record keeps it."""
    return dataclasses.asdict(result) if result is not None else None


def decode_result(data: object) -> JobResult | None:
    """The answer a control record kept, or None."""
    if not isinstance(data, dict):
        return None
    try:
        return JobResult(**{f.name: data[f.name] for f in dataclasses.fields(JobResult)})
    except (KeyError, TypeError):
        return None


def intent_of(job: Job) -> DelegationIntent | None:
    """The record's delegation, or one read from the marker if the record is lost."""
    intent = job.claim.record.delegation
    if intent is not None and intent.key and intent.provider:
        return intent
    info = read_info(job.task.meta.model_extra)
    if info is None:
        logger.error("delegated task without job information", extra={"task": job.claim.task_id})
        return None
    return DelegationIntent(
        info.provider,
        info.idempotency_key,
        DelegationPhase.SUBMITTED,
        job_id=info.job_id,
        submitted_at=info.submitted_at,
    )


def fallback_outcome(job: Job, provider: str, reason: str, at: datetime) -> Outcome:
    """A REQUEUE outcome that marks ``provider`` unavailable for this task (record saved)."""
    record = job.claim.record
    record.unavailable = tuple(sorted({*record.unavailable, provider} - {""}))
    record.delegation = None
    job.claim.project.save_record(record)
    logger.warning(
        "provider unavailable; task goes down the fallback chain",
        extra={"task": job.claim.task_id, "provider": provider, "reason": redact(reason)},
    )
    return Outcome(job, OutcomeStatus.REQUEUE, at, error=redact(reason), target=provider)


def failed_outcome(
    job: Job,
    provider: str,
    job_id: str | None,
    reason: str,
    at: datetime,
    attempts: int | None = None,
) -> Outcome:
    """A FAILED outcome naming the job and the provider's attempts."""
    details: list[tuple[str, str]] = []
    if job_id:
        details.append(("job id", job_id))
    if attempts is not None:
        details.append(("provider attempts", str(attempts)))
    logger.error(
        "delegated task failed",
        extra={"task": job.claim.task_id, "provider": provider, "reason": redact(reason)},
    )
    return Outcome(
        job,
        OutcomeStatus.FAILED,
        at,
        error=redact(reason),
        target=provider or None,
        details=tuple(details),
    )


def retries_of(source: object) -> int:
    """How many retries a result or a failure reports (``retries``, else ``attempts - 1``)."""
    retries = getattr(source, "retries", None)
    if retries is None:
        attempts = getattr(source, "attempts", 1)
        retries = max(0, attempts - 1) if isinstance(attempts, int) else 0
    return int(retries)


def stale_fields(
    job: Job, provider: str, job_id: str | None, age: float, after: float
) -> dict[str, Any]:
    """What a stale job's ``task_stale`` event and status entry say about it."""
    claim = job.claim
    return {
        "project": claim.project.path.name,
        "task": claim.name,
        "provider": provider,
        "job_id": job_id,
        "age_s": round(age),
        "stale_after": after,
        "message": f"{claim.task_id}: job {job_id} at {provider} running for {age:.0f}s",
    }
