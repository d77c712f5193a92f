"""Delegation of tasks to remote AI providers.

- :mod:`~agentq.delegation.providers`: the client interface and the three clients
  (job API, OpenAI-compatible, Anthropic) built by ``make_client``.
- :mod:`~agentq.delegation.http`: the HTTP adapter with the shared retry policy.
- :mod:`~agentq.delegation.retry`: pure retry decisions.
- :mod:`~agentq.delegation.pricing`: price table and cost arithmetic.
"""

from __future__ import annotations

from agentq.delegation.http import ProviderHTTPError, RetryPolicy
from agentq.delegation.pricing import format_cost
from agentq.delegation.providers import (
    AnthropicClient,
    JobApiClient,
    JobResult,
    JobStatus,
    OpenAICompatibleClient,
    ProviderClient,
    ProviderSettings,
    Submission,
    make_client,
)

__all__ = [
    "AnthropicClient",
    "JobApiClient",
    "JobResult",
    "JobStatus",
    "OpenAICompatibleClient",
    "ProviderClient",
    "ProviderHTTPError",
    "ProviderSettings",
    "RetryPolicy",
    "Submission",
    "format_cost",
    "make_client",
]
