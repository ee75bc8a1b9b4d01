"""A study's whole record, to keep or to analyse elsewhere: JSON, or CSV tables.

JSON holds the study as ``GET /studies/{id}`` shows it, then each trial with its full
config, every metric at every step and the ratings people gave it (with who gave them).
``trials.csv`` is one row per trial (its searched params as ``param.<name>`` columns);
``metrics.csv`` one row per trial, step and metric.
NaN values are stored as NULL: empty cells in CSV, ``null`` in JSON.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from gentune.service.db.models import Study
from gentune.service.db.repository import Repository
from gentune.service.schemas.api import RatingOut
from gentune.service.studies.views import describe_study, describe_trial, full_config

FORMAT = "gentune-export/1"


def export_json(repo: Repository, study: Study, base_url: str) -> dict[str, Any]:
    history: dict[int, dict[str, list[list[Any]]]] = defaultdict(lambda: defaultdict(list))
    for trial_id, step, name, value in repo.study_metrics(study.id):
        history[trial_id][name].append([step, value])
    ratings: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for rating in repo.study_ratings(study.id):
        ratings[rating.trial_id].append(
            RatingOut.model_validate(rating, from_attributes=True).model_dump(mode="json")
        )
    trials = [
        {
            **describe_trial(trial).model_dump(mode="json"),
            "config": full_config(study, trial),
            "metrics": history.get(trial.id, {}),
            "ratings": ratings.get(trial.id, []),
        }
        for trial in repo.all_trials(study.id)
    ]
    return _finite(
        {
            "format": FORMAT,
            "exported_at": datetime.now(UTC).isoformat(),
            "study": describe_study(repo, study, base_url).model_dump(mode="json"),
            "trials": trials,
        }
    )


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: JSON has no words for them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


TRIAL_COLUMNS = (
    "trial_id",
    "number",
    "state",
    "value",
    "best_step",
    "last_step",
    "pruned_by",
    "origin",
    "attempts",
    "rating_mean",
    "rating_count",
    "wins",
    "losses",
    "started_at",
    "finished_at",
    "reason",
)


def trials_csv(repo: Repository, study: Study) -> str:
    trials = repo.all_trials(study.id)
    names = sorted({name for trial in trials for name in trial.params})
    rows = []
    for trial in trials:
        out = describe_trial(trial).model_dump(mode="json")
        out["trial_id"] = out["id"]
        reason = out["reason"] or ""
        out["reason"] = reason.splitlines()[0] if reason else ""  # the traceback stays in JSON
        rows.append(
            [out[column] for column in TRIAL_COLUMNS] + [trial.params.get(n) for n in names]
        )
    return _csv([*TRIAL_COLUMNS, *(f"param.{n}" for n in names)], rows)


def metrics_csv(repo: Repository, study: Study) -> str:
    numbers = {trial.id: trial.number for trial in repo.all_trials(study.id)}
    rows = (
        [trial_id, numbers.get(trial_id), step, name, value]
        for trial_id, step, name, value in repo.study_metrics(study.id)
    )
    return _csv(["trial_id", "number", "step", "metric", "value"], rows)


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    """None as an empty cell; text a spreadsheet would run as a formula (a choice or an
    error message starting with =, +, -, @) behind a quote mark."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
