"""Prometheus metrics of one ``tether serve`` replica, in the text exposition format.

=============================== ========= =====================================================
name                            type      what it counts
=============================== ========= =====================================================
tether_decisions_total          counter   verdicts answered, by ``decision``, ``tool`` and
                                          ``reason`` (the first reason code; empty for allow)
tether_authorize_seconds        histogram ``POST /v1/authorize`` handled, from the first byte
                                          in to the last byte out
tether_audit_append_seconds     histogram writing one decision with its audit record (one
                                          store transaction; refused and failed ones included)
tether_tasks_open               gauge     open tasks, read from the store at scrape time
tether_approvals_pending        gauge     approvals waiting for a human, read at scrape time
tether_budget_used              gauge     budget consumed by open tasks with limits, by ``kind``
                                          and ``classification`` (``any`` for a limit on all)
tether_leases_live              gauge     live downstream-credential leases
tether_store_up                 gauge     1 when the scrape could read the store, else 0
tether_policy_reload_failures   counter   reloads of the policy directory that did not load (the
_total                                    last good revision stayed in force)
tether_policy_revision_info     gauge     1, labelled with the ``revision`` in force
tether_policy_reload_failing    gauge     1 while the latest reload failed, else 0
=============================== ========= =====================================================

Label values are bounded: ``decision`` and ``reason`` are closed enums, and ``tool`` names come
from agents, so only the first :data:`DEFAULT_TOOL_CAP` distinct ones get their own series; every
later one is counted as ``tool="_other"``.

Several workers (``tether serve --workers N``) share one set of series through prometheus_client's
multiprocess mode: each worker writes its samples to files in a directory private to the replica
(``PROMETHEUS_MULTIPROC_DIR``), and a scrape, whichever worker answers it, adds up every worker's
files. The gauges are read from the store, which the workers share, so any worker answers them
alike. The tool cap is kept per worker, so a replica has at most workers x cap tool series.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.values import MutexValue, ValueClass

from tether.core.errors import TetherError
from tether.core.verdict import Decision, Verdict
from tether.policy.reload import ReloadResult
from tether.service.ports import Clock, PolicyEngine
from tether.store.sql import SqlStore
from tether.store.stats import read_stats

#: The text format ``generate_latest`` writes (Prometheus text exposition 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DEFAULT_TOOL_CAP = 500
OTHER_TOOL = "_other"

# Decisions take a few milliseconds; a store under contention, seconds.
_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def multiprocess_enabled() -> bool:
    """Whether prometheus_client chose its multiprocess values (``PROMETHEUS_MULTIPROC_DIR`` was
    set before it was first imported in this process)."""
    return ValueClass is not MutexValue


def first_reason(verdict: Verdict) -> str:
    """The ``reason`` label: the first reason code, or empty for an allow."""
    if verdict.decision is Decision.ALLOW or not verdict.reasons:
        return ""
    return verdict.reasons[0].code.value


class Metrics:
    """The metric families of one process, and the scrape of the whole replica.

    ``multiprocess_dir`` names the directory every worker of the replica writes to; it must be
    the ``PROMETHEUS_MULTIPROC_DIR`` this process started with.
    """

    def __init__(
        self, *, tool_cap: int = DEFAULT_TOOL_CAP, multiprocess_dir: Path | None = None
    ) -> None:
        if tool_cap < 0:
            raise ValueError("tool_cap must not be negative")
        if multiprocess_dir is not None and not multiprocess_enabled():
            raise ValueError(
                "multiprocess metrics need PROMETHEUS_MULTIPROC_DIR set before prometheus_client "
                "is imported"
            )
        self._tool_cap = tool_cap
        self._tools: set[str] = set()
        # The decision counter's children, bound once per label set (labels() validates and
        # locks on every call): at most (tool_cap + 1) x decisions x reasons of them.
        self._bound: dict[tuple[Decision, str, str], Counter] = {}
        self._lock = threading.Lock()
        self._watching = False
        # The families record into this process; in multiprocess mode into its files, which
        # the scrape registry below reads for every worker.
        own = CollectorRegistry(auto_describe=True)
        self._decisions = Counter(
            "tether_decisions",
            "Verdicts answered, by decision, tool and first reason code (empty for allow).",
            ["decision", "tool", "reason"],
            registry=own,
        )
        self._authorize = Histogram(
            "tether_authorize_seconds",
            "Time to handle one POST /v1/authorize request, first byte in to last byte out.",
            buckets=_BUCKETS,
            registry=own,
        )
        self._audit_append = Histogram(
            "tether_audit_append_seconds",
            "Time to write one decision with its audit record (one store transaction).",
            buckets=_BUCKETS,
            registry=own,
        )
        self._reload_failures = Counter(
            "tether_policy_reload_failures",
            "Reloads of the policy directory that did not load; the last good revision stayed.",
            registry=own,
        )
        self._watching_policy = False
        if multiprocess_dir is None:
            self._scrape = own
        else:
            self._scrape = CollectorRegistry(auto_describe=True)
            MultiProcessCollector(self._scrape, path=str(multiprocess_dir))  # type: ignore[no-untyped-call]

    def decision(self, verdict: Verdict, tool: str, reason: str | None = None) -> None:
        """Count ``verdict`` for ``tool``; ``reason`` is its :func:`first_reason`, when the
        caller has it already."""
        if reason is None:
            reason = first_reason(verdict)
        key = (verdict.decision, self._tool_label(tool), reason)
        child = self._bound.get(key)
        if child is None:
            child = self._bound[key] = self._decisions.labels(key[0].value, key[1], reason)
        child.inc()

    def authorize_request(self, seconds: float) -> None:
        self._authorize.observe(seconds)

    def audit_append(self, seconds: float) -> None:
        self._audit_append.observe(seconds)

    def policy_reloaded(self, result: ReloadResult) -> None:
        """The policy engine's ``on_reload``: count the reloads that failed."""
        if not result.ok:
            self._reload_failures.inc()

    def watch_policy(self, policy: PolicyEngine) -> None:
        """Report the revision in force and whether the latest reload failed, on every scrape."""
        with self._lock:
            if self._watching_policy:
                return
            self._watching_policy = True
        self._scrape.register(PolicyGauges(policy))

    def watch_store(self, store: SqlStore, clock: Clock) -> None:
        """Report the store's gauges on every scrape (once per ``Metrics``)."""
        with self._lock:
            if self._watching:
                return
            self._watching = True
        self._scrape.register(StoreGauges(store, clock))

    def exposition(self) -> bytes:
        """The scrape: every worker's samples, and the store's gauges."""
        return generate_latest(self._scrape)

    def _tool_label(self, tool: str) -> str:
        # INVARIANT: at most tool_cap distinct tool label values per process.
        if tool in self._tools:
            return tool
        with self._lock:
            if tool in self._tools:
                return tool
            if len(self._tools) < self._tool_cap:
                self._tools.add(tool)
                return tool
        return OTHER_TOOL


class StoreGauges:
    """A collector reading the store's counts at scrape time (not a per-worker value, so it is
    outside multiprocess mode's files and the same whichever worker answers)."""

    def __init__(self, store: SqlStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def describe(self) -> Iterable[Metric]:
        return ()  # names are fixed; describing must not read the store

    def collect(self) -> Iterable[Metric]:
        now = self._clock.now()
        up = GaugeMetricFamily(
            "tether_store_up", "1 when this scrape could read the store, else 0."
        )
        try:
            stats = read_stats(self._store, now)
            leases = self._store.count_live_leases(now)
        except TetherError:
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        found: list[Metric] = [
            up,
            GaugeMetricFamily(
                "tether_tasks_open", "Open tasks (not past their expiry).", value=stats.tasks_open
            ),
            GaugeMetricFamily(
                "tether_approvals_pending",
                "Approvals waiting for a human (not expired).",
                value=stats.approvals_pending,
            ),
        ]
        budget = GaugeMetricFamily(
            "tether_budget_used",
            "Budget consumed by open tasks with a limit on it (settled, or reserved until the "
            "effect is reported), by kind and classification.",
            labels=["kind", "classification"],
        )
        for (kind, classification), amount in sorted(stats.budget_used.items()):
            budget.add_metric([kind, classification or "any"], amount)
        found.append(budget)
        found.append(
            GaugeMetricFamily(
                "tether_leases_live", "Live downstream-credential leases.", value=leases
            )
        )
        return found


class PolicyGauges:
    """A collector reading the policy engine at scrape time: the revision this process decides
    on, and whether its latest reload failed (a process's own state, like its decisions)."""

    def __init__(self, policy: PolicyEngine) -> None:
        self._policy = policy

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterable[Metric]:
        revision = GaugeMetricFamily(
            "tether_policy_revision_info",
            "The policy revision in force, as a label (value 1).",
            labels=["revision"],
        )
        revision.add_metric([self._policy.revision], 1)
        failing = GaugeMetricFamily(
            "tether_policy_reload_failing",
            "1 while the latest reload of the policy directory failed, else 0.",
            value=0 if self._policy.last_error is None else 1,
        )
        return [revision, failing]
