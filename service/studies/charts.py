"""Aggregates of a study for dashboards and the CLI, computed on the server and cached.

A dashboard polls these while a study runs, and a study may hold thousands of trials, so
nothing here hands out every point of every trial: ``trial_columns`` gives one row per trial
(as columns), ``curves`` one metric over steps for a chosen few trials, ``importances``
Optuna's parameter importances. Each result is serialized once per study *revision* (see
``Repository.study_revision``) and served from ``ViewCache`` until the study changes.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import optuna
from pydantic import BaseModel, TypeAdapter

from gentune.service.db.models import Study, TrialState
from gentune.service.db.repository import Repository
from gentune.service.schemas.api import (
    Curve,
    CurvesOut,
    ImportancesOut,
    TrialColumns,
)
from gentune.service.schemas.study import (
    ParamSpec,
)
from gentune.service.studies.space import distribution

PARAM_SPEC: TypeAdapter[ParamSpec] = TypeAdapter(ParamSpec)
MAX_IMPORTANCE_TRIALS = 500
"""Importances look at the latest this many completed trials: fANOVA's cost grows with them
(16 trees on 1,000 trials take about 4 s on one core here, 64 trees 15 s; 500 take 1.5 s)."""
FANOVA_TREES = 16
"""Fewer than Optuna's default 64: the same ranking on our benchmarks, a quarter of the time."""


class ViewCache:
    """Serialized views keyed by what was asked, each valid for one study revision.

    Thread-safe, and single-flight per key: while one request computes a view, others asking
    for the same key do not compute it again. They get the view of the previous revision at
    once when there is one (importances can take seconds, and a poller is better served a
    view a few seconds old than a thread held until the new one is ready), or else wait for
    it. Least recently used entries go first.
    """

    def __init__(self, max_entries: int = 512) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[str, bytes, str]] = OrderedDict()
        self._lock = threading.Lock()
        self._computing: dict[Hashable, threading.Lock] = {}

    def peek(self, key: Hashable, revision: str) -> tuple[bytes, str] | None:
        """The view's body and ETag if it is cached for ``revision``."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or hit[0] != revision:
                return None
            self._entries.move_to_end(key)
            return hit[1], hit[2]

    def put(self, key: Hashable, revision: str, body: bytes, etag: str) -> None:
        with self._lock:
            self._entries[key] = (revision, body, etag)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get(
        self, key: Hashable, revision: str, compute: Callable[[], BaseModel]
    ) -> tuple[bytes, str]:
        """The view's JSON body and an ETag made from that body (so it changes exactly when
        the body does, across upgrades and databases too)."""
        found = self.peek(key, revision)
        if found is not None:
            return found
        with self._lock:
            flight = self._computing.setdefault(key, threading.Lock())
            previous = self._entries.get(key)
        if not flight.acquire(blocking=previous is None):
            assert previous is not None
            return previous[1], previous[2]  # another request is computing the new one
        try:
            found = self.peek(key, revision)  # computed by the request we waited for
            if found is not None:
                return found
            body, etag = json_with_etag(compute())
            self.put(key, revision, body, etag)
        finally:
            with self._lock:
                if self._computing.get(key) is flight:
                    del self._computing[key]
            flight.release()
        return body, etag


def json_with_etag(view: BaseModel) -> tuple[bytes, str]:
    """``view``'s JSON body and an ETag made from those bytes."""
    body = view.model_dump_json().encode()
    return body, etag_of(body)


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha1(body).hexdigest()[:24] + '"'


def trial_columns(repo: Repository, study: Study, revision: str) -> TrialColumns:
    objective = study.spec["objective"]
    maximize = objective["direction"] == "maximize"
    names = list(study.spec.get("search_space", {}))
    rows = repo.trial_rows(study.id)
    best: float | None = None
    best_so_far: list[float | None] = []
    for row in rows:
        if (
            row.state == TrialState.completed
            and row.value is not None
            and row.feasible is not False
        ):
            if best is None or (row.value > best if maximize else row.value < best):
                best = row.value
        best_so_far.append(best)
    return TrialColumns(
        study_id=study.id,
        revision=revision,
        objective=objective,
        trial_id=[row.id for row in rows],
        number=[row.number for row in rows],
        state=[row.state for row in rows],
        value=[row.value for row in rows],
        best_so_far=best_so_far,
        pruned_by=[row.pruned_by for row in rows],
        last_step=[row.last_step for row in rows],
        objectives=study.spec.get("objectives") or [objective],
        values=[row.values for row in rows],
        feasible=[row.feasible for row in rows],
        params={name: [(row.params or {}).get(name) for row in rows] for name in names},
    )


def curves(
    repo: Repository, study: Study, revision: str, metric: str, best: int, recent: int
) -> CurvesOut:
    direction = study.spec["objective"]["direction"]
    chosen = repo.trials_for_curves(study.id, direction, best, recent)
    series: dict[int, tuple[list[int], list[float | None]]] = {t.id: ([], []) for t in chosen}
    for trial_id, step, value in repo.metric_series(list(series), metric):
        steps, values = series[trial_id]
        steps.append(step)
        values.append(value)
    return CurvesOut(
        study_id=study.id,
        revision=revision,
        metric=metric,
        total_trials=repo.count_trials(study.id),
        trials=[
            Curve(
                trial_id=t.id,
                number=t.number,
                state=t.state,
                reason=t.reason,
                pruned_by=t.pruned_by,
                pruned_step=t.pruned_step,
                steps=series[t.id][0],
                values=series[t.id][1],
            )
            for t in chosen
        ],
    )


def importances(repo: Repository, study: Study, revision: str) -> ImportancesOut:
    """Optuna's fANOVA importances over the completed trials, from gentune's own records
    (an in-memory Optuna study), so the worker's Optuna storage is not loaded per request."""
    method = f"optuna.importance.FanovaImportanceEvaluator(n_trees={FANOVA_TREES})"
    space = {
        name: distribution(PARAM_SPEC.validate_python(raw))
        for name, raw in study.spec.get("search_space", {}).items()
    }
    out = ImportancesOut(
        study_id=study.id, revision=revision, method=method, n_trials=0, importances={}
    )
    varying = {name: d for name, d in space.items() if not d.single()}
    if not varying:
        out.note = "The search space has no param that varies."
        return out
    frozen = []
    for row in repo.trial_rows(study.id):
        if row.state != TrialState.completed or row.value is None or not math.isfinite(row.value):
            continue
        params = {name: (row.params or {}).get(name) for name in space}
        try:
            frozen.append(
                optuna.trial.create_trial(params=params, distributions=space, value=row.value)
            )
        except ValueError:  # a value outside its distribution (e.g. a definition edited by hand)
            continue
    frozen = frozen[-MAX_IMPORTANCE_TRIALS:]
    out.n_trials = len(frozen)
    if len(frozen) < 2:
        out.note = "Importances need at least two completed trials."
        return out
    in_memory = optuna.create_study(direction=study.spec["objective"]["direction"])
    in_memory.add_trials(frozen)
    try:
        found = optuna.importance.get_param_importances(
            in_memory,
            evaluator=optuna.importance.FanovaImportanceEvaluator(n_trees=FANOVA_TREES, seed=0),
            params=list(varying),
        )
    except (RuntimeError, ValueError) as exc:
        out.note = f"Optuna could not compute importances yet: {exc}"
        return out
    out.importances = {name: float(value) for name, value in found.items()}
    return out
