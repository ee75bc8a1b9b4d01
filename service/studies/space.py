"""A definition's search space as Optuna sees it (distributions, grids) and the sampler and
pruner it runs with: what the worker needs from the domain."""

from __future__ import annotations

import math
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import TypeAdapter

from gentune.service.schemas.study import (
    CategoricalParam,
    FloatParam,
    IntParam,
    ParamSpec,
    PrunerSpec,
    SamplerSpec,
    StudySpec,
)
from gentune.trainers.base import Trainer

PRUNER_ADAPTER: TypeAdapter[PrunerSpec] = TypeAdapter(PrunerSpec)


def pruner_for(spec: StudySpec, trainer: Trainer) -> PrunerSpec:
    """The study's pruner, or the trainer's default (``pruner_defaults``), or median."""
    if spec.pruner is not None:
        return spec.pruner
    return PRUNER_ADAPTER.validate_python(trainer.pruner_defaults or {"type": "median"})


SAMPLER_ADAPTER: TypeAdapter[SamplerSpec] = TypeAdapter(SamplerSpec)


def sampler_for(spec: StudySpec, trainer: Trainer) -> SamplerSpec:
    """The study's sampler, or the trainer's default (``sampler_defaults``) when the
    definition names none, or gentune's (``StudySpec.sampler``'s default)."""
    if "sampler" in spec.model_fields_set or trainer.sampler_defaults is None:
        return spec.sampler
    return SAMPLER_ADAPTER.validate_python(dict(trainer.sampler_defaults))


def grid_size(spec: StudySpec) -> int:
    """Points on the grid a grid study spans (every param must have grid values)."""
    return math.prod(grid_count(dist) or 0 for dist in spec.search_space.values())


def grid_count(dist: ParamSpec) -> int | None:
    """How many values ``dist`` has on a grid (counted, never listed), or None when it has no
    finite grid."""
    if isinstance(dist, CategoricalParam):
        return len(dist.choices)
    if dist.log or dist.step is None:
        return None
    if isinstance(dist, IntParam):
        return (dist.high - dist.low) // dist.step + 1
    return math.floor((dist.high - dist.low) / dist.step + 1e-9) + 1


def grid_values(dist: ParamSpec) -> list[Any] | None:
    """Every value of ``dist`` on a grid, or None when it has no finite grid. Call it on a
    validated study only: validation bounds the grid's size."""
    count = grid_count(dist)
    if count is None:
        return None
    if isinstance(dist, CategoricalParam):
        return list(dist.choices)
    if isinstance(dist, IntParam):
        return list(range(dist.low, dist.high + 1, dist.step))
    assert dist.step is not None
    return [dist.low + i * dist.step for i in range(count)]


def distribution(spec: ParamSpec) -> BaseDistribution:
    """The Optuna distribution a search-space entry stands for."""
    if isinstance(spec, CategoricalParam):
        return CategoricalDistribution(spec.choices)
    if isinstance(spec, FloatParam):
        return FloatDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
    return IntDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
