"""Prometheus metrics of one running orchestrator (prometheus-client).

Every ``Runtime`` has its own ``Metrics`` with its own registry, so several apps in one
Python process (tests, the bench) never share or clash; ``/metrics`` renders that
registry. Hot paths (each HTTP request, each engine step, each Twilio request) reach a
child metric cached by its label values: one dict lookup, no label-dict building.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orchestrator.store import gauges

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: from a loopback answer (ms) to a Twilio timeout (10 s).
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Seconds from a task's creation to its final node: an SMS takes seconds, a lost
# callback waits for its reconcile (an hour) or the node's time limit (a day).
TASK_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400)

# Why a callback was refused, by the error code the webhook answered with.
REJECT_REASONS = {
    "INVALID_SIGNATURE": "signature",
    "NOT_FOUND": "hash",
    "TASK_NOT_FOUND": "unknown_task",
    "MISSING_TASK_ID": "unknown_task",
    "MISSING_SID": "malformed",
    "MALFORMED_FORM": "malformed",
    "MALFORMED_JSON": "malformed",
    "UNSUPPORTED_MEDIA_TYPE": "malformed",
}


class _Cached:
    """Children of a labelled metric, kept by their label values."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.http = _Cached(
            Histogram(
                "orchestrator_http_request_duration_seconds",
                "HTTP requests by route template, method and status code.",
                ["route", "method", "status"],
                buckets=FAST_BUCKETS,
                registry=r,
            )
        )
        self.twilio = _Cached(
            Counter(
                "orchestrator_twilio_requests",
                "Requests sent to Twilio's API by action, outcome (ok, error, retryable, "
                "no_answer) and Twilio error code.",
                ["action", "outcome", "code"],
                registry=r,
            )
        )
        self.twilio_latency = _Cached(
            Histogram(
                "orchestrator_twilio_request_duration_seconds",
                "Time to Twilio's answer (or its absence) by action.",
                ["action"],
                buckets=FAST_BUCKETS,
                registry=r,
            )
        )
        self.callbacks = _Cached(
            Counter(
                "orchestrator_callbacks",
                "Callbacks by form (json, twilio, nvp) and result: received (stored), "
                "duplicate, applied (to its task), ignored (late or not advancing).",
                ["form", "result"],
                registry=r,
            )
        )
        self.rejected = _Cached(
            Counter(
                "orchestrator_callbacks_rejected",
                "Callbacks refused by form and reason (signature, hash, unknown_task, "
                "malformed, other).",
                ["form", "reason"],
                registry=r,
            )
        )
        self.task_duration = _Cached(
            Histogram(
                "orchestrator_task_duration_seconds",
                "From a task's creation to its final node, by process and outcome.",
                ["process", "outcome"],
                buckets=TASK_BUCKETS,
                registry=r,
            )
        )
        self.step_seconds = Histogram(
            "orchestrator_engine_step_duration_seconds",
            "One engine step: a node's logics and the committed transition.",
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.orphans_purged = Counter(
            "orchestrator_orphan_callbacks_purged",
            "Orphan callbacks this process deleted (past ORCH_ORPHAN_CALLBACK_TTL or beyond "
            "ORCH_ORPHAN_CALLBACK_MAX).",
            registry=r,
        )
        ProcessCollector(registry=r)  # CPU seconds, resident memory, open files
        self._database: _DatabaseCollector | None = None

    def track_database(
        self, read: Callable[[Callable[[Any], Any]], Any], steps: Callable[[], int | None]
    ) -> None:
        """Gauges read from the database at scrape time; ``read(fn)`` runs ``fn(conn)``.
        A second app on the same runtime replaces the first one's collector."""
        if self._database is not None:
            self.registry.unregister(self._database)
        self._database = _DatabaseCollector(read, steps)
        self.registry.register(self._database)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- recording -------------------------------------------------------------------
    def twilio_request(self, action: str, outcome: str, code: str, seconds: float) -> None:
        self.twilio(action, outcome, code).inc()
        self.twilio_latency(action).observe(seconds)

    def callback_rejected(self, form: str, error_code: str) -> str:
        reason = REJECT_REASONS.get(error_code, "other")
        self.rejected(form, reason).inc()
        return reason


class _DatabaseCollector(Collector):
    def __init__(
        self, read: Callable[[Callable[[Any], Any]], Any], steps: Callable[[], int | None]
    ) -> None:
        self._read = read
        self._steps = steps

    def describe(self) -> Iterable[Metric]:
        return []  # computed at scrape time only

    def collect(self) -> Iterator[Metric]:
        def counts(conn: Any) -> tuple[Any, ...]:
            return (
                gauges.process_slugs(conn),
                gauges.state_counts(conn),
                gauges.runnable_by_process(conn),
                gauges.unsettled_callbacks_by_process(conn),
                gauges.orphan_callbacks(conn),
            )

        slugs, states, runnable, unsettled, orphans = self._read(counts)
        yield GaugeMetricFamily(
            "orchestrator_orphan_callbacks",
            "Callbacks waiting for a task that has not (yet) recorded their sid or ref.",
            value=orphans,
        )
        tasks = GaugeMetricFamily(
            "orchestrator_tasks",
            "Tasks by process and state (done split by outcome).",
            labels=["process", "state"],
        )
        totals: dict[tuple[str, str], int] = {}
        for slug in slugs.values():
            for state in ("active", "waiting", "success", "escalation"):
                totals[(slug, state)] = 0
        for pid, state, outcome, n in states:
            key = (slugs.get(pid, str(pid)), outcome if state == "done" and outcome else state)
            totals[key] = totals.get(key, 0) + n
        for (slug, state), n in sorted(totals.items()):
            tasks.add_metric([slug, state], n)
        yield tasks
        for name, doc, values in (
            (
                "orchestrator_runnable_tasks",
                "Tasks ready for (or in) an engine step, by process.",
                runnable,
            ),
            (
                "orchestrator_pending_callbacks",
                "Callbacks stored but not yet applied to their task, by process.",
                unsettled,
            ),
        ):
            family = GaugeMetricFamily(name, doc, labels=["process"])
            for pid, slug in sorted(slugs.items()):
                family.add_metric([slug], values.get(pid, 0))
            yield family
        steps = self._steps()
        if steps is not None:
            from prometheus_client.core import CounterMetricFamily

            yield CounterMetricFamily(
                "orchestrator_engine_steps",
                "Node transitions run by this process's engine.",
                value=steps,
            )
