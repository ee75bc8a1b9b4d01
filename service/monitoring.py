"""Prometheus metrics: study and trial gauges read from the database at each scrape, and
the API's request latency by route template.

The database figures are computed when Prometheus scrapes, not counted in memory, so every
API process reports the same truth and nothing is lost on a restart. Each app has its own
``CollectorRegistry`` (on ``app.state.metrics_registry``), never the global default one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.routing import RouteContext, iter_route_contexts
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString
from sqlalchemy.exc import SQLAlchemyError
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gentune.service.db.models import ACTIVE_TRIAL_STATES, TrialState, utcnow
from gentune.service.db.repository import Repository
from gentune.service.db.retry import first_line, is_transient
from gentune.service.db.session import session_scope

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
UNMATCHED_ROUTE = "<unmatched>"
TRIAL_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
"""Upper bounds in seconds, from a smoke-test trial to a six-hour training run (+Inf after)."""
FINISHED_TRIAL_STATES = tuple(s.value for s in TrialState if s not in ACTIVE_TRIAL_STATES)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class DatabaseCollector:
    """Study, trial and worker figures read from gentune's database at each scrape, plus
    ``gentune_database_up``: 0, and nothing else from here, when the database cannot be read."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "gentune_database_up", "1 when this scrape could read gentune's database, else 0."
        )
        try:
            with session_scope(self.database_url) as session:
                families = database_metrics(Repository(session))
        except SQLAlchemyError as error:
            if is_transient(error):
                log.warning("metrics: database unreachable: %s", first_line(error))
            else:
                log.exception("metrics: database query failed", exc_info=error)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families


def database_metrics(repo: Repository) -> list[Metric]:
    """The metric families computed from the database, a few aggregate queries in all."""
    studies = GaugeMetricFamily("gentune_studies", "Studies in each state.", labels=["state"])
    for state, count in repo.count_studies_by_state().items():
        studies.add_metric([state], count)

    trials = GaugeMetricFamily(
        "gentune_trials", "Trials in each state, over all studies.", labels=["state"]
    )
    for state, count in repo.count_trials_by_state().items():
        trials.add_metric([state], count)

    pruned_counts: dict[str, int] = {}
    for pruned_by, count in repo.count_pruned_trials_by_rule().items():
        label = pruned_by or "unknown"
        pruned_counts[label] = pruned_counts.get(label, 0) + count
    pruned = GaugeMetricFamily(
        "gentune_trials_pruned",
        "Pruned trials by what stopped them: stability/<rule> or pruner/<type>.",
        labels=["pruned_by"],
    )
    for label, count in sorted(pruned_counts.items()):
        pruned.add_metric([label], count)

    durations = HistogramMetricFamily(
        "gentune_trial_duration_seconds",
        "Finished trials' time from creation to finish (waiting for resources included), "
        "by final state.",
        labels=["state"],
    )
    by_state = repo.trial_duration_histogram(TRIAL_DURATION_BUCKETS)
    bounds = [floatToGoString(bound) for bound in TRIAL_DURATION_BUCKETS] + ["+Inf"]
    for state in FINISHED_TRIAL_STATES:
        counts, total = by_state.get(state, ([0] * len(bounds), 0.0))
        durations.add_metric([state], list(zip(bounds, counts, strict=True)), total)

    active, oldest_heartbeat = repo.running_studies_liveness()
    workers = GaugeMetricFamily(
        "gentune_workers_active", "Workers running at least one study (idle workers not counted)."
    )
    workers.add_metric([], active)
    heartbeat_age = GaugeMetricFamily(
        "gentune_study_heartbeat_age_seconds",
        "Seconds since the stalest heartbeat of a running study (0 when none runs); "
        "a stuck worker shows as a steady climb.",
    )
    age = 0.0 if oldest_heartbeat is None else (utcnow() - oldest_heartbeat).total_seconds()
    heartbeat_age.add_metric([], max(age, 0.0))

    return [studies, trials, pruned, durations, workers, heartbeat_age]


class RequestDurationMiddleware:
    """Times each HTTP request by method, route template and status.

    The route is the template the request matches (``/api/v1/studies/{study_id}``, as
    ``/openapi.json`` lists it), never the raw path, so ids do not multiply the series;
    ``<unmatched>`` when no route matches.
    """

    def __init__(
        self,
        app: ASGIApp,
        histogram: Histogram,
        router: Router,
        skip_routes: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.histogram = histogram
        self.router = router
        self.skip_routes = skip_routes
        self._routes: list[RouteContext] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self.route_template(scope)  # before routing, which rewrites parts of the scope
        if route in self.skip_routes:
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in HTTP_METHODS else "other"
        status = 500  # what the client gets when the app raises before it answers

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            elapsed = time.perf_counter() - start
            self.histogram.labels(method, route, str(status)).observe(elapsed)

    def route_template(self, scope: Scope) -> str:
        """The template of the route the router will choose: the first full match, else the
        first that matches all but the method (a 405), else ``<unmatched>``."""
        if self._routes is None:
            # Routers included with a prefix are kept whole by FastAPI; this flattens them
            # into routes with their full templates, as the OpenAPI schema is built.
            self._routes = list(iter_route_contexts(self.router.routes))
        partial = None
        for route in self._routes:
            if route.path_format is None:
                continue
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route.path_format
            if match is Match.PARTIAL and partial is None:
                partial = route.path_format
        return partial or UNMATCHED_ROUTE


def install_metrics(app: FastAPI, database_url: str) -> None:
    """Give ``app`` its own metrics registry and time its requests (scrapes of
    ``/metrics`` itself left out)."""
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(database_url))
    histogram = Histogram(
        "gentune_http_request_duration_seconds",
        "Time to answer an API request, by method, route template and status.",
        ["method", "route", "status"],
        registry=registry,
    )
    app.add_middleware(
        RequestDurationMiddleware,
        histogram=histogram,
        router=app.router,
        skip_routes=frozenset({METRICS_PATH}),
    )
    app.state.metrics_registry = registry
