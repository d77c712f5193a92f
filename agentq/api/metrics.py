"""Prometheus metrics: a collector that reads the daemon's snapshot at scrape time, plus
histograms fed by the event log. The only module that imports prometheus_client.

Everything lives in a registry of its own (never the process-global one). No label
carries a task name or anything else a user can invent without limit: projects are
the served ones (at most :data:`MAX_PROJECT_LABELS`; the rest are summed under
``_other``), sessions appear only as counts by state, accounts and providers come
from the configuration, hook events and reading sources from fixed sets.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agentq.api.view import TASK_STATES, DaemonView

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_PROJECT_LABELS = 200
OTHER = "_other"
#: Tasks whose arrival or claim time is remembered for the latency histograms.
MAX_TRACKED = 10_000
HOOK_EVENTS = frozenset(
    {"SessionStart", "UserPromptSubmit", "Stop", "StopFailure", "PermissionRequest"}
    | {"Notification", "SessionEnd"}
)
READING_SOURCES = frozenset({"hook", "pane", "transcript"})
READING_KINDS = frozenset({"quota", "server_error", "ok"})
SESSION_STATES = (
    "empty",
    "launching",
    "idle",
    "pasted",
    "submitted",
    "busy",
    "quota",
    "exiting",
    "parked",
)
#: Pickups take milliseconds and deliveries tens of them: four buckets per doubling from
#: 0.5 ms to about a second keep a median estimate within a few percent, then coarser.
_LATENCY = (
    *(round(0.0005 * 2 ** (i / 4), 6) for i in range(44)),
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
)
_DURATION = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)


class _SnapshotCollector(Collector):
    """Gauges and counters read from the latest snapshot when Prometheus scrapes."""

    def __init__(self, view: DaemonView, lag: Any) -> None:
        self._view = view
        self._lag = lag

    def collect(self) -> Iterator[Metric]:
        snap = self._view.snapshot()
        yield from self._queue(snap.projects)
        yield from self._sessions(snap.sessions)
        yield from self._accounts(snap.accounts, snap.account_names, snap.tallies)
        yield from self._delegation(snap.delegation)
        yield from self._engine(snap.counters, snap.watches, snap.tallies)
        stale = GaugeMetricFamily(
            "agentq_tasks_stale",
            "Tasks flagged stale: local ones by no progress, delegated ones by job age",
            labels=["executor"],
        )
        for executor, rule in (("local", "no progress"), ("delegated", "job age")):
            count = sum(1 for s in snap.stale if s.get("rule") == rule)
            stale.add_metric([executor], float(count))
        yield stale
        lag = GaugeMetricFamily(
            "agentq_main_loop_lag_seconds",
            "How long the main loop's current pass has been running (0 between passes)",
        )
        lag.add_metric([], self._lag())
        yield lag
        last = GaugeMetricFamily(
            "agentq_main_loop_last_pass_timestamp_seconds", "When the last main-loop pass ended"
        )
        last.add_metric([], float(snap.loop.get("last_pass_end") or 0.0))
        yield last
        passed = GaugeMetricFamily(
            "agentq_main_loop_pass_seconds", "How long the last main-loop pass took"
        )
        passed.add_metric([], float(snap.loop.get("last_pass_s") or 0.0))
        yield passed

    def _queue(self, projects: Any) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "agentq_queue_tasks", "Tasks by project and state", labels=["project", "state"]
        )
        oldest = GaugeMetricFamily(
            "agentq_queue_oldest_pending_timestamp_seconds",
            "Arrival time of the oldest pending task, by project",
            labels=["project"],
        )
        rows: dict[str, dict[str, float]] = {}
        for i, (name, counts) in enumerate(sorted(projects.items())):
            label = name if i < MAX_PROJECT_LABELS else OTHER
            row = rows.setdefault(label, {})
            for state in TASK_STATES:
                row[state] = row.get(state, 0) + float(counts.get(state, 0))
            first = counts.get("oldest_pending")
            if first is not None:
                row["oldest"] = min(row.get("oldest", first), first)
        for label, row in rows.items():
            for state in TASK_STATES:
                depth.add_metric([label, state], row[state])
            if "oldest" in row:
                oldest.add_metric([label], row["oldest"])
        yield depth
        yield oldest

    def _sessions(self, sessions: Any) -> Iterator[Metric]:
        family = GaugeMetricFamily("agentq_sessions", "Pool sessions by state", labels=["state"])
        counts = dict.fromkeys(SESSION_STATES, 0)
        for s in sessions:
            state = str(s.get("state"))
            key = state if state in counts else "other"
            counts[key] = counts.get(key, 0) + 1
        for state, n in counts.items():
            family.add_metric([state], n)
        yield family

    def _accounts(self, accounts: Any, names: Any, tallies: Any) -> Iterator[Metric]:
        known = set(names)
        active = GaugeMetricFamily(
            "agentq_account_active", "1 for the active account", labels=["account"]
        )
        exhausted = GaugeMetricFamily(
            "agentq_account_exhausted", "1 while an account is exhausted", labels=["account"]
        )
        reset = GaugeMetricFamily(
            "agentq_account_exhausted_until_timestamp_seconds",
            "When an exhausted account resets",
            labels=["account"],
        )
        now = time.time()
        for entry in accounts.get("accounts", []):
            name = str(entry.get("name"))
            if name not in known:
                continue
            active.add_metric([name], 1.0 if name == accounts.get("active") else 0.0)
            until = entry.get("exhausted_until_ts")
            exhausted.add_metric([name], 1.0 if until is not None and until > now else 0.0)
            if until is not None:
                reset.add_metric([name], float(until))
        yield active
        yield exhausted
        yield reset
        held = GaugeMetricFamily("agentq_queue_held", "1 while every account is exhausted")
        held.add_metric([], 1.0 if accounts.get("hold") else 0.0)
        yield held
        partial = GaugeMetricFamily("agentq_partial_swap", "1 in the partial-swap state")
        partial.add_metric([], 1.0 if accounts.get("partial_swap") else 0.0)
        yield partial
        readings = CounterMetricFamily(
            "agentq_quota_readings",
            "Quota readings of the agent sessions",
            labels=["account", "source", "kind"],
        )
        for key, n in tallies.items():
            if len(key) == 4 and key[0] == "reading":
                account, source, kind = key[1:]
                bounded = source in READING_SOURCES and kind in READING_KINDS
                if bounded and (account in known or account == "default"):
                    readings.add_metric([account, source, kind], n)
        yield readings

    def _delegation(self, d: Any) -> Iterator[Metric]:
        active = GaugeMetricFamily("agentq_delegation_jobs_active", "Delegated jobs in flight")
        active.add_metric([], float(d.get("active", 0) or 0))
        yield active
        jobs = CounterMetricFamily(
            "agentq_delegation_jobs", "Delegated jobs by outcome", labels=["outcome"]
        )
        for outcome in ("submitted", "completed", "failed", "fallbacks"):
            jobs.add_metric([outcome], float(d.get(outcome, 0) or 0))
        yield jobs
        retries = CounterMetricFamily("agentq_delegation_retries", "Provider calls retried")
        retries.add_metric([], float(d.get("retried", 0) or 0))
        yield retries
        cost = CounterMetricFamily("agentq_delegation_cost_usd", "Cost of delegated jobs in USD")
        cost.add_metric([], float(d.get("cost_total_usd", 0.0) or 0.0))
        yield cost

    def _engine(self, counters: Any, watches: Any, tallies: Any) -> Iterator[Metric]:
        simple = (
            ("agentq_rescans", "Full rescans of every inbox", "rescans"),
            ("agentq_inotify_overflows", "inotify queue overflows (events lost)", "overflows"),
            ("agentq_refused", "Inbox entries refused", "refused"),
            ("agentq_requeued", "Tasks given back to the inbox", "requeued"),
            ("agentq_loop_errors", "Main-loop passes that failed", "loop_errors"),
        )
        for name, doc, key in simple:
            family = CounterMetricFamily(name, doc)
            family.add_metric([], float(counters.get(key, 0)))
            yield family
        polling = GaugeMetricFamily(
            "agentq_inotify_fallbacks", "Inboxes watched by polling because inotify failed"
        )
        polling.add_metric(
            [], float(sum(1 for w in watches.values() if w.get("mode") == "polling"))
        )
        yield polling
        retries = CounterMetricFamily("agentq_delivery_retries", "Task deliveries retried")
        retries.add_metric([], float(tallies.get(("delivery_retries",), 0)))
        yield retries
        hooks = CounterMetricFamily(
            "agentq_hook_signals", "Agent hook signals received", labels=["event"]
        )
        seen: dict[str, float] = {}
        for key, n in tallies.items():
            if len(key) == 2 and key[0] == "signal":
                event = key[1] if key[1] in HOOK_EVENTS else "other"
                seen[event] = seen.get(event, 0) + n
        for event, n in sorted(seen.items()):
            hooks.add_metric([event], n)
        yield hooks


class Metrics:
    """The registry, the snapshot collector, and the event-driven histograms."""

    def __init__(self, view: DaemonView, lag: Any = None) -> None:
        self._view = view
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_SnapshotCollector(view, lag or (lambda: 0.0)))
        self._finished = Counter(
            "agentq_tasks_finished",
            "Tasks finished, by executor and outcome",
            ["executor", "outcome"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "agentq_task_duration_seconds",
            "Claim to done/failed, by executor and outcome",
            ["executor", "outcome"],
            buckets=_DURATION,
            registry=self.registry,
        )
        self._pickup = Histogram(
            "agentq_pickup_latency_seconds",
            "Arrival in the inbox to the claim, by executor",
            ["executor"],
            buckets=_LATENCY,
            registry=self.registry,
        )
        self._delivery = Histogram(
            "agentq_delivery_latency_seconds",
            "Claim to the agent busy on the task (by its own hook's clock when it has one)",
            buckets=_LATENCY,
            registry=self.registry,
        )
        self._swaps = Counter(
            "agentq_swaps",
            "Account swaps, by the account left and the one taken",
            ["from_account", "to_account"],
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._arrived: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._claimed: OrderedDict[tuple[str, str], tuple[float, str]] = OrderedDict()
        view.events.subscribe(self._on_event)

    def render(self) -> bytes:
        """The exposition text for ``GET /metrics``."""
        return generate_latest(self.registry)

    def _on_event(self, event: Any) -> None:
        """Feed the histograms (runs on the emitting thread: quick, never raises)."""
        fields = event.fields
        at = event.time.timestamp()
        if event.kind == "swap":
            accounts = set(self._view.snapshot().account_names) | {"default"}
            src, dst = str(fields.get("from")), str(fields.get("to"))
            if src in accounts and dst in accounts:
                self._swaps.labels(src, dst).inc()
            return
        key = (str(fields.get("project")), str(fields.get("task")))
        with self._lock:
            if event.kind == "delivered":
                claimed = self._claimed.get(key)
                if claimed is not None and claimed[1] == "local":
                    busy = _when(fields, "at", at)
                    self._delivery.observe(max(0.0, busy - claimed[0]))
                return
            if event.kind != "task":
                return
            self._on_task(key, str(fields.get("state")), at, fields)

    def _on_task(self, key: tuple[str, str], state: str, at: float, fields: Any) -> None:
        # The events carry the moments themselves (the file's arrival, the claim's rename):
        # the event's own time is later by whatever the loop did in between.
        if state == "pending":
            self._arrived.setdefault(key, _when(fields, "arrived", at))
            _trim(self._arrived)
        elif state in ("working", "delegated"):
            executor = "local" if state == "working" else "delegated"
            claimed_at = _when(fields, "claimed", at)
            arrived = self._arrived.pop(key, None)
            if arrived is not None:
                self._pickup.labels(executor).observe(max(0.0, claimed_at - arrived))
            self._claimed[key] = (claimed_at, executor)
            _trim(self._claimed)
        elif state in ("done", "failed"):
            self._arrived.pop(key, None)
            claimed = self._claimed.pop(key, None)
            executor = claimed[1] if claimed else "queue"
            self._finished.labels(executor, state).inc()
            if claimed is not None:
                self._duration.labels(executor, state).observe(max(0.0, at - claimed[0]))


def _when(fields: Any, name: str, default: float) -> float:
    """A time an event carries as a field (Unix seconds), else ``default``."""
    value = fields.get(name)
    return float(value) if isinstance(value, int | float) else default


def _trim(tracked: OrderedDict[Any, Any]) -> None:
    while len(tracked) > MAX_TRACKED:
        tracked.popitem(last=False)
