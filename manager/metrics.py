"""Prometheus metrics at ``/metrics``: states counted at scrape time, plus claim timings.

Several manager processes (``--workers``) each count into files in ``PROMETHEUS_MULTIPROC_DIR``
(``prometheus_client``'s multiprocess mode, chosen when that variable is set before it is
imported), and a scrape, whichever worker answers it, adds up every process's counts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlmodel import Session, col

from manager.models import Job, Runner, Task
from shared.wire import JobStatus, RunnerStatus, TaskStatus

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


class FarmMetrics:
    """One registry per app, so that several apps (tests) never share counters."""

    def __init__(self, engine: Engine) -> None:
        counted = CollectorRegistry()
        self.claim_seconds = Histogram(
            "framefarm_claim_seconds",
            "Time to run one claim (the atomic UPDATE) for a runner",
            registry=counted,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        )
        self.tasks_completed = Counter(
            "framefarm_tasks_completed", "Tasks completed by runners", registry=counted
        )
        self.tasks_failed = Counter(
            "framefarm_tasks_failed",
            "Failed task attempts reported by runners",
            registry=counted,
        )
        shared = os.environ.get(MULTIPROCESS_DIR)
        if shared:
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry, path=shared)
        else:
            self.registry = counted
        self.registry.register(_StateCollector(engine))


class _StateCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with Session(self.engine) as session:
            for name, model, states in (
                ("jobs", Job, JobStatus),
                ("tasks", Task, TaskStatus),
                ("runners", Runner, RunnerStatus),
            ):
                counts = dict(
                    session.execute(
                        select(col(model.status), func.count()).group_by(col(model.status))  # type: ignore[attr-defined]
                    ).all()
                )
                family = GaugeMetricFamily(
                    f"framefarm_{name}", f"{name.capitalize()} by state", labels=["state"]
                )
                for state in states:
                    family.add_metric([state.value], counts.get(state.value, 0))
                yield family
