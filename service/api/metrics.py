"""/metrics: Prometheus text format, at the root as Prometheus expects (open like every read)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gentune.service.api.deps import MetricsRegistryDep
from gentune.service.monitoring import METRICS_PATH
from gentune.service.schemas.api import error_responses

router = APIRouter(tags=["monitoring"])


@router.get(
    METRICS_PATH,
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."},
        **error_responses({401: "A token is needed (GENTUNE_PROTECT_READS)."}),
    },
)
def metrics(registry: MetricsRegistryDep) -> Response:
    """Metrics for Prometheus to scrape: studies, trials, pruning and trial durations read
    from the database at each scrape (``gentune_database_up`` 0 when it cannot be read), and
    this process's request latency by route."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
