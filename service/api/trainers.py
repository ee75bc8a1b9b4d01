"""/trainers: what can be tuned, its params' JSON schema and the metrics it reports."""

from __future__ import annotations

from fastapi import APIRouter

from gentune.service.schemas.api import MetricInfo, Page, TrainerOut, error_responses
from gentune.trainers.registry import trainer_classes

router = APIRouter(
    prefix="/trainers",
    tags=["trainers"],
    responses=error_responses({401: "A token is needed (GENTUNE_PROTECT_READS)."}),
)


@router.get("")
def list_trainers() -> Page[TrainerOut]:
    data = [
        TrainerOut(
            name=name,
            description=cls.description,
            params_schema=cls.Params.model_json_schema(),
            metrics=[
                MetricInfo(name=m, description=spec.description, direction=spec.direction)
                for m, spec in cls.metrics.items()
            ],
        )
        for name, cls in trainer_classes().items()
    ]
    return Page(data=data, count=len(data))
