"""StudySpec: the study definition, as posted over REST or written in a YAML file.

Structural checks (types, ranges, unknown keys) live on the models; checks that need the
trainer (its params, its metrics) live in ``service.studies.validate_spec``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)


class StrictModel(BaseModel):
    """Every part of a study definition: unknown fields are errors, and so is a float that is
    NaN or infinite (JSON cannot carry one, and no sampler, pruner or rule can use one)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# --- search space --------------------------------------------------------------------------


class _Range(StrictModel):
    """Checks shared by numeric ranges; fields are declared in order log, low, high."""

    @field_validator("low", check_fields=False)
    @classmethod
    def _check_low(cls, low: float, info: ValidationInfo) -> float:
        if info.data.get("log") and low <= 0:
            raise ValueError(f"a log range must lie above 0, but low is {low}")
        return low

    @field_validator("high", check_fields=False)
    @classmethod
    def _check_high(cls, high: float, info: ValidationInfo) -> float:
        low = info.data.get("low")
        if low is not None and high <= low:
            raise ValueError(
                f"high ({high}) must be above low ({low}); to fix a value, put it under params"
            )
        return high


MAX_STEPS = 1e15
"""Most values a float range's step may cut it into (floats hold about 15 digits)."""


class FloatParam(_Range):
    type: Literal["float"]
    log: bool = False
    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    step: float | None = Field(None, gt=0)

    @field_validator("step")
    @classmethod
    def _check_step(cls, step: float | None, info: ValidationInfo) -> float | None:
        if step is not None and info.data.get("log"):
            raise ValueError("a log range cannot have a step; drop one of them")
        low, high = info.data.get("low"), info.data.get("high")
        if step is not None and low is not None and high is not None:
            values = (high - low) / step
            if not math.isfinite(values) or values > MAX_STEPS:
                raise ValueError(
                    f"a step of {step:g} cuts the range into more than {MAX_STEPS:.0e} values, "
                    "more than a float can tell apart: use a larger step, or none"
                )
        return step


class IntParam(_Range):
    type: Literal["int"]
    log: bool = False
    low: int
    high: int
    step: int = Field(1, ge=1)

    @field_validator("step")
    @classmethod
    def _check_step(cls, step: int, info: ValidationInfo) -> int:
        if step != 1 and info.data.get("log"):
            raise ValueError("a log range of integers takes no step (it must be 1)")
        return step


def _finite_choice(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"is {value}: a choice must be a finite number, a string or a bool")
    return value


Choice = Annotated[
    Annotated[str, Field(max_length=200)] | bool | int | float, BeforeValidator(_finite_choice)
]


class CategoricalParam(StrictModel):
    type: Literal["categorical"]
    choices: list[Choice] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _check_choices(self) -> CategoricalParam:
        seen = [repr(c) for c in self.choices]
        if len(set(seen)) != len(seen):
            raise ValueError("choices must not repeat")
        return self


ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


# --- samplers ------------------------------------------------------------------------------


class _Sampler(StrictModel):
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="Fixes the sequence of suggestions."
    )


class RandomSampler(_Sampler):
    type: Literal["random"]


class TPESampler(_Sampler):
    type: Literal["tpe"]
    n_startup_trials: int = Field(
        10, ge=0, le=10_000, description="Random trials before TPE starts."
    )
    multivariate: bool = True
    constant_liar: bool = Field(True, description="Avoid suggesting near trials still running.")
    local_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of trials (after the first completes) that perturb the best config "
        "so far instead of asking TPE: local search around the incumbent.",
    )
    local_scale: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Each numeric param's step, as a share of its range (log ranges in log "
        "space); each categorical one switches with this probability.",
    )


DEFAULT_SAMPLER: dict[str, Any] = {"type": "tpe", "n_startup_trials": 4}
"""gentune's sampler when neither the definition nor its trainer names one: multivariate TPE
that starts informed after 4 random trials instead of 10 (studies of 12 to 20 trials would
otherwise spend most of their budget at random). Measured against TPE with 10 startup trials,
the same with local search, and random search by ``benchmarks/search_quality.py`` (README,
"Does tuning pay?")."""


class CmaEsSampler(_Sampler):
    type: Literal["cmaes"]
    n_startup_trials: int = Field(1, ge=0, le=10_000)
    sigma0: float | None = Field(None, gt=0)


class QMCSampler(_Sampler):
    type: Literal["qmc"]
    qmc_type: Literal["sobol", "halton"] = "sobol"
    scramble: bool = True


class GPSampler(_Sampler):
    type: Literal["gp"]
    n_startup_trials: int = Field(10, ge=0, le=10_000)


class GridSampler(_Sampler):
    type: Literal["grid"]


class _NSGASampler(_Sampler):
    population_size: int = Field(50, ge=2, le=10_000)
    crossover_prob: float = Field(0.9, ge=0, le=1)
    mutation_prob: float | None = Field(None, ge=0, le=1)


class NSGA2Sampler(_NSGASampler):
    """NSGA-II: the classic evolutionary multi-objective sampler (one objective works too)."""

    type: Literal["nsga2"]


class NSGA3Sampler(_NSGASampler):
    """NSGA-III: NSGA-II with reference points, for three or more objectives."""

    type: Literal["nsga3"]


SamplerSpec = Annotated[
    RandomSampler
    | TPESampler
    | CmaEsSampler
    | QMCSampler
    | GPSampler
    | GridSampler
    | NSGA2Sampler
    | NSGA3Sampler,
    Field(discriminator="type"),
]
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)
"""Samplers that optimize one objective only."""


# --- pruners -------------------------------------------------------------------------------


class NoPruner(StrictModel):
    type: Literal["none"]


class _StepPruner(StrictModel):
    n_startup_trials: int = Field(5, ge=0, le=10_000, description="Finished trials before pruning.")
    n_warmup_steps: int = Field(0, ge=0, description="Steps of each trial never pruned.")
    interval_steps: int = Field(1, ge=1, description="Check every this many steps.")


class MedianPruner(_StepPruner):
    type: Literal["median"]


class PercentilePruner(_StepPruner):
    type: Literal["percentile"]
    percentile: float = Field(25.0, ge=0, le=100, description="Prune below this percentile.")


class SuccessiveHalvingPruner(StrictModel):
    type: Literal["successive_halving"]
    min_resource: int | Literal["auto"] = "auto"
    reduction_factor: int = Field(4, ge=2)
    min_early_stopping_rate: int = Field(0, ge=0)


class HyperbandPruner(StrictModel):
    type: Literal["hyperband"]
    min_resource: int = Field(1, ge=1)
    max_resource: int | Literal["auto"] = "auto"
    reduction_factor: int = Field(3, ge=2)


class WilcoxonPruner(StrictModel):
    type: Literal["wilcoxon"]
    p_threshold: float = Field(0.1, gt=0, lt=1)
    n_startup_steps: int = Field(2, ge=0)


class ThresholdPruner(StrictModel):
    type: Literal["threshold"]
    lower: float | None = None
    upper: float | None = None
    n_warmup_steps: int = Field(0, ge=0)
    interval_steps: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check_bounds(self) -> ThresholdPruner:
        if self.lower is None and self.upper is None:
            raise ValueError("give lower, upper or both")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError(f"lower ({self.lower}) must not exceed upper ({self.upper})")
        return self


class PatientPruner(StrictModel):
    type: Literal["patient"]
    patience: int = Field(3, ge=0, description="Steps without improvement before pruning.")
    min_delta: float = Field(0.0, ge=0)
    wrapped: PrunerSpec | None = Field(None, description="A pruner consulted once patience allows.")


PrunerSpec = Annotated[
    NoPruner
    | MedianPruner
    | PercentilePruner
    | SuccessiveHalvingPruner
    | HyperbandPruner
    | WilcoxonPruner
    | ThresholdPruner
    | PatientPruner,
    Field(discriminator="type"),
]
PatientPruner.model_rebuild()


# --- stability rules -----------------------------------------------------------------------


class _Rule(StrictModel):
    enabled: bool = Field(True, description="false drops the trainer's default rule of this type.")
    patience: int = Field(
        1, ge=1, le=1000, description="Evaluations in a row the condition must hold."
    )
    warmup: int = Field(0, ge=0, le=100_000, description="First evaluations this rule ignores.")


MetricName = Annotated[str, Field(min_length=1, max_length=200)]


class NonFiniteRule(_Rule):
    """A NaN or infinite value: training has blown up; stops at once by default."""

    type: Literal["non_finite"]
    metrics: list[MetricName] | None = Field(
        None,
        max_length=200,
        description="Metrics watched; null: the objective and every metric the trainer reports "
        "(timings aside).",
    )


class DivergenceRule(_Rule):
    """A loss that climbs far above the lowest value it has reached."""

    type: Literal["divergence"]
    metrics: list[MetricName] = Field(min_length=1, max_length=20)
    factor: float = Field(3.0, gt=1, le=1e12, description="Fires above factor x running minimum.")
    floor: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="Values at or below this never count."
    )
    patience: int = Field(2, ge=1, le=1000)


class DiscriminatorCollapseRule(_Rule):
    """D wins outright (it separates real from fake almost always) while G's loss climbs or
    stays where it was when D began winning."""

    type: Literal["discriminator_collapse"]
    accuracy: float = Field(
        0.99, ge=0.5, le=1, description="stability/d_accuracy at or above this counts."
    )
    d_loss_floor: float | None = Field(
        None,
        allow_inf_nan=False,
        description="And d_loss must be below this: D has saturated (null: accuracy alone).",
    )
    patience: int = Field(3, ge=2, le=1000)


class GradientExplosionRule(_Rule):
    """A gradient norm above an absolute bound, or jumping far above its usual level."""

    type: Literal["gradient_explosion"]
    metrics: list[MetricName] = Field(min_length=1, max_length=20)
    max_norm: float = Field(1e4, gt=0, allow_inf_nan=False, description="Absolute bound.")
    factor: float | None = Field(
        100.0,
        gt=1,
        allow_inf_nan=False,
        description="Also fires above factor x the median of the earlier evaluations (null: off).",
    )


class ModeCollapseRule(_Rule):
    """Samples far less diverse than the real data: the generator draws a few images only."""

    type: Literal["mode_collapse"]
    metric: MetricName = Field(
        "stability/diversity", description="A diversity signal: 1 matches the real data."
    )
    min_ratio: float = Field(0.1, gt=0, lt=1, description="Fires below this.")
    patience: int = Field(2, ge=1, le=1000)


class StalledRule(_Rule):
    """The objective has not improved on its best for ``patience`` evaluations."""

    type: Literal["stalled"]
    min_delta: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="Smaller improvements do not count."
    )
    patience: int = Field(5, ge=1, le=1000)


class DeadObjectiveRule(_Rule):
    """The objective has not moved off its floor (the worst value the metric can take, or the
    trial's first value) while other trials of the study (completed, pruned or still running)
    did better by the same step:
    the trial is going nowhere, and a pruner comparing with a median of equal values (all at
    the floor) would let it train to the end."""

    type: Literal["dead_objective"]
    min_delta: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="Moves of at most this much do not count."
    )
    guide: MetricName | None = Field(
        None,
        description="A dense metric whose improvement also counts as moving (a slow starter "
        "can improve here while its objective still sits at the floor); null: none.",
    )
    guide_delta: float = Field(
        0.2,
        gt=0,
        le=1e6,
        description="The guide counts as moving once its best is this fraction better than "
        "its first value.",
    )
    guide_until: float = Field(
        0.67,
        gt=0,
        le=1,
        description="The guide's moving spares a trial only up to this share of its run (its "
        "last evaluation step, where the trainer knows it); later only the objective's own "
        "move counts. 1: for the whole run.",
    )
    patience: int = Field(2, ge=1, le=1000)
    warmup: int = Field(3, ge=0, le=100_000)


StabilityRule = Annotated[
    NonFiniteRule
    | DivergenceRule
    | DiscriminatorCollapseRule
    | GradientExplosionRule
    | ModeCollapseRule
    | StalledRule
    | DeadObjectiveRule,
    Field(discriminator="type"),
]


class StabilitySpec(StrictModel):
    """Rules that stop a trial whose training has gone wrong, checked before the pruner."""

    defaults: bool = Field(
        True,
        description="Start from the trainer's default rules; a listed rule replaces the "
        "default of its type.",
    )
    rules: list[StabilityRule] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _check_unique(self) -> StabilitySpec:
        types = [rule.type for rule in self.rules]
        repeated = sorted({t for t in types if types.count(t) > 1})
        if repeated:
            raise ValueError(f"rule type(s) {', '.join(repeated)} listed more than once")
        return self


# --- the study -----------------------------------------------------------------------------


class Objective(StrictModel):
    metric: str = Field(min_length=1, max_length=200, description="A metric the trainer reports.")
    direction: Literal["minimize", "maximize"]


class Constraint(StrictModel):
    """A bound a trial's metric must keep, at the evaluation its objective values come from."""

    metric: str = Field(min_length=1, max_length=200, description="A metric the trainer reports.")
    min: float | None = Field(None, allow_inf_nan=False, description="Feasible at or above.")
    max: float | None = Field(None, allow_inf_nan=False, description="Feasible at or below.")

    @model_validator(mode="after")
    def _check_bounds(self) -> Constraint:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max}): nothing is feasible")
        return self

    def violation(self, value: float | None) -> float:
        """How far ``value`` lies outside the bounds (0 inside; Optuna's convention: > 0 is
        infeasible). A missing or non-finite value is infinitely far."""
        if value is None or not math.isfinite(value):
            return math.inf
        below = self.min - value if self.min is not None else -math.inf
        above = value - self.max if self.max is not None else -math.inf
        return max(below, above, 0.0)


class Budget(StrictModel):
    n_trials: int = Field(
        20, ge=1, description="Trials to run (the service caps it; see settings)."
    )
    max_concurrent: int = Field(1, ge=1, description="Trials running at once.")
    max_evaluations: int | None = Field(
        None,
        ge=1,
        le=10**9,
        description="A compute budget in evaluations (trial-epochs) of all trials together: a "
        "trial starts only while one as long as the longest so far still fits, beside what "
        "the running trials may still report. Trials pruned early leave room for more "
        "trials; n_trials stays the cap.",
    )
    timeout_s: float | None = Field(
        None, gt=0, le=30 * 24 * 3600, description="Stop starting trials after this many seconds."
    )
    max_failures: int = Field(
        1,
        ge=0,
        le=10,
        description="Times a trial starts again after its Ray worker or node died under it; "
        "a trainer's own exception is never retried.",
    )


class Checkpoints(StrictModel):
    """What each trial keeps on disk; the rest is deleted as the trial goes."""

    keep_best: int = Field(
        1, ge=0, le=20, description="Checkpoints of the trial's best evaluations, by objective."
    )
    keep_last: bool = Field(True, description="Also the latest checkpoint.")


class Resources(StrictModel):
    cpu: float = Field(1.0, gt=0, le=512, description="CPUs per trial (Ray resource).")
    gpu: float = Field(0.0, ge=0, le=64, description="GPUs per trial; fractions share a GPU.")

    @model_validator(mode="after")
    def _check_gpu(self) -> Resources:
        if self.gpu > 1 and not float(self.gpu).is_integer():
            raise ValueError(f"gpu above 1 must be a whole number, got {self.gpu}")
        return self


class WarmStart(StrictModel):
    """Start from what an earlier study learned: its best trials' configs run first."""

    from_study: int = Field(ge=1, le=2**31 - 1, description="The earlier study's id.")
    top_k: int = Field(
        5, ge=1, le=100, description="How many of its best completed trials to run again."
    )
    trials: list[int] | None = Field(
        None,
        max_length=100,
        description="Filled in at submit: the ids of the trials taken, best first, so the "
        "stored definition starts the same way when submitted again. Given, only these "
        "trials of from_study are taken.",
    )


Point = dict[Annotated[str, Field(max_length=200)], Any]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class StudySpec(StrictModel):
    """A search over one trainer's hyperparameters."""

    name: str = Field(
        min_length=1,
        max_length=100,
        pattern=NAME_PATTERN,
        description="Letters, digits, '.', '_' and '-'; need not be unique.",
    )
    description: str | None = Field(None, max_length=5000)
    trainer: str = Field(min_length=1, max_length=100, description="A registered trainer's name.")
    params: dict[str, Any] = Field(default_factory=dict, description="Fixed trainer params.")
    search_space: dict[str, ParamSpec] = Field(default_factory=dict, max_length=200)
    objective: Objective = Field(
        description="The objective; in a multi-objective study the primary one, which pruning, "
        "the trial's value and its best checkpoints follow (default: the first of objectives)."
    )
    objectives: list[Objective] | None = Field(
        None,
        min_length=2,
        max_length=4,
        description="A multi-objective study: 2 to 4 objectives; its best is a Pareto set.",
    )
    constraints: list[Constraint] = Field(
        default_factory=list,
        max_length=10,
        description="Bounds on metrics; a trial outside them is infeasible, never the best.",
    )
    sampler: SamplerSpec = Field(default_factory=lambda: TPESampler(**DEFAULT_SAMPLER))
    pruner: PrunerSpec | None = Field(
        None,
        description="Default: the trainer's own (its pruner_defaults), else median; the stored "
        "definition shows the one in force.",
    )
    stability: StabilitySpec = Field(default_factory=StabilitySpec)
    budget: Budget = Field(default_factory=Budget)
    resources: Resources = Field(default_factory=Resources)
    checkpoints: Checkpoints = Field(default_factory=Checkpoints)
    points_to_evaluate: list[Point] = Field(
        default_factory=list,
        max_length=100,
        description="Configs to run first, in order (values for some or all searched params; "
        "the sampler fills in the rest).",
    )
    warm_start: WarmStart | None = Field(
        None, description="Run an earlier study's best configs first (after points_to_evaluate)."
    )
    baseline: bool = Field(
        True,
        description="Run the trainer's defaults (with the fixed params) as the first trial, "
        "each searched param's default moved into its range or choices where it lies outside, "
        "and report the study's best against it. Not with the grid sampler.",
    )

    @model_validator(mode="before")
    @classmethod
    def _primary_objective(cls, data: Any) -> Any:
        """``objectives`` alone: the first is the primary ``objective``."""
        if isinstance(data, dict) and "objective" not in data:
            objectives = data.get("objectives")
            if isinstance(objectives, list) and objectives and isinstance(objectives[0], dict):
                return {**data, "objective": dict(objectives[0])}
        return data

    @property
    def all_objectives(self) -> list[Objective]:
        return list(self.objectives) if self.objectives is not None else [self.objective]

    @property
    def multi_objective(self) -> bool:
        return self.objectives is not None

    @model_validator(mode="after")
    def _check_objectives(self) -> StudySpec:
        if self.objectives is None:
            return self
        metrics = [o.metric for o in self.objectives]
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"objectives repeat a metric: {metrics}")
        if self.objective not in self.objectives:
            raise ValueError(
                f"objective ({self.objective.metric}, {self.objective.direction}) must be one of "
                "objectives: it names the primary one, which pruning and checkpoints follow"
            )
        if self.sampler.type in SINGLE_OBJECTIVE_SAMPLERS:
            raise ValueError(
                f"sampler {self.sampler.type} optimizes one objective; with objectives use "
                "nsga2, nsga3, tpe, gp, random, qmc or grid"
            )
        return self

    @model_validator(mode="after")
    def _check_overlap(self) -> StudySpec:
        both = sorted(set(self.params) & set(self.search_space))
        if both:
            raise ValueError(
                f"{', '.join(both)} appear(s) both in params and in search_space; keep one"
            )
        return self
