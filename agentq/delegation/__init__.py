"""Delegation of tasks to remote AI providers.

- :mod:`~agentq.delegation.providers`: the client interface and the three clients
  (job API, OpenAI-compatible, Anthropic) built by ``make_client``.
- :mod:`~agentq.delegation.http`: the HTTP adapter with the shared retry policy.
- :mod:`~agentq.delegation.retry`: pure retry decisions.
- :mod:`~agentq.delegation.pricing`: price table and cost arithmetic.
- :mod:`~agentq.delegation.manager`: the executor: markers, reaper, recovery.
"""
