"""Every query gentune makes. Callers own the session and decide when to commit."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, and_, case, delete, func, null, or_, select, update
from sqlalchemy.orm import Session

from gentune.service.db.models import (
    ACTIVE_TRIAL_STATES,
    DATABASE_ID,
    WORKER_LOST,
    Artifact,
    Meta,
    Metric,
    PruneRecord,
    Rating,
    Study,
    StudyState,
    Trial,
    TrialState,
    utcnow,
)
from gentune.service.errors import Conflict, NotFound

FINISHED_STUDY_STATES = (StudyState.completed, StudyState.failed, StudyState.cancelled)
TRIAL_SORT_KEYS: dict[str, Any] = {
    "number": Trial.number,
    "value": Trial.value,
    "state": Trial.state,
    "last_step": Trial.last_step,
    "created_at": Trial.created_at,
    "finished_at": Trial.finished_at,
    "rating": Trial.rating_mean,
}
"""Columns a study's trials can be listed by."""


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; gentune stores UTC, so mark them so."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@dataclass
class StudySummary:
    """What a study's summary shows of its trials: how many are in each state, its best
    (completed, feasible) trial, and its first trial of a given origin (the baseline)."""

    counts: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in TrialState})
    best: TrialBrief | None = None
    of_origin: TrialBrief | None = None


@dataclass(frozen=True)
class StudyVersion:
    """A study's id and a string that changes whenever the study's row changes (a finished
    study's summary changes only with it: its trials are done)."""

    id: int
    version: str


VERSION_COLUMNS = (
    Study.state,
    Study.finished_at,
    Study.claims,
    Study.heartbeat_at,
    Study.cancel_requested,
    Study.cancelled_by,
    Study.state_reason,
)


@dataclass(frozen=True)
class TrialBrief:
    """The columns of a trial that a study's summary shows (read without the rest of its row)."""

    id: int
    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    reason: str | None
    feasible: bool | None
    pruned_step: int | None

    @classmethod
    def of(cls, trial: Trial) -> TrialBrief:
        return cls(*(getattr(trial, name) for name in cls.__dataclass_fields__))


BRIEF_COLUMNS = tuple(getattr(Trial, name) for name in TrialBrief.__dataclass_fields__)


class Repository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # --- studies -------------------------------------------------------------------------

    def create_study(
        self, name: str, trainer: str, spec: Mapping[str, Any], submitted_by: str | None = None
    ) -> Study:
        # The Optuna name derives from the id, known only after the insert.
        study = Study(
            name=name,
            trainer=trainer,
            spec=dict(spec),
            submitted_by=submitted_by,
            state=StudyState.queued,
            optuna_study_name=f"pending-{uuid.uuid4().hex}",
        )
        self.session.add(study)
        self.session.flush()
        study.optuna_study_name = optuna_study_name(study.id)
        self.session.flush()
        return study

    def get_study(self, study_id: int) -> Study:
        study = self.session.get(Study, study_id)
        if study is None:
            raise NotFound(f"Study {study_id} does not exist.")
        return study

    def list_studies(
        self, offset: int, limit: int, state: str | None = None
    ) -> tuple[list[StudyVersion], int]:
        """A page of studies, newest first, as their ids and what their summaries change
        with (not their rows: a listing reads those only for the summaries it has not got);
        and how many studies there are (in ``state``) in all."""
        query = select(Study.id, *VERSION_COLUMNS)
        count_query = select(func.count(Study.id))
        if state is not None:
            query = query.where(Study.state == state)
            count_query = count_query.where(Study.state == state)
        rows = self.session.execute(query.order_by(Study.id.desc()).offset(offset).limit(limit))
        versions = [StudyVersion(study_id, repr(tuple(rest))) for study_id, *rest in rows]
        return versions, int(self.session.scalar(count_query) or 0)

    def studies_by_id(self, ids: Sequence[int]) -> list[Study]:
        return list(self.session.scalars(select(Study).where(Study.id.in_(ids))))

    def request_cancel(self, study_id: int, by: str | None = None) -> Study:
        """Queued studies are cancelled at once; running ones are flagged for their worker."""
        study = self.get_study(study_id)
        if study.state in FINISHED_STUDY_STATES:
            raise Conflict(
                f"Study {study_id} is already {study.state}; there is nothing to cancel."
            )
        study.cancelled_by = by
        if study.state == StudyState.queued:
            self.finish_study(study, StudyState.cancelled, "cancelled before it started")
        else:
            study.cancel_requested = True
        self.session.flush()
        return study

    def claim_next_study(self, worker_id: str) -> Study | None:
        """Atomically take the oldest queued study: two workers never get the same one.

        On Postgres the row lock with SKIP LOCKED lets concurrent workers pass each other;
        the conditional UPDATE makes the claim atomic on SQLite too.
        """
        candidate = self.session.scalars(
            select(Study)
            .where(Study.state == StudyState.queued)
            .order_by(Study.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if candidate is None:
            return None
        now = utcnow()
        claimed = self._rowcount(
            update(Study)
            .where(Study.id == candidate.id, Study.state == StudyState.queued)
            .values(
                state=StudyState.running,
                worker_id=worker_id,
                heartbeat_at=now,
                started_at=func.coalesce(Study.started_at, now),
                claims=Study.claims + 1,
            )
            .execution_options(synchronize_session=False)
        )
        if claimed != 1:
            return None
        self.session.refresh(candidate)
        return candidate

    def requeue_studies_of_worker(self, worker_id: str) -> list[int]:
        """Put back in the queue the running studies of a worker that has just (re)started."""
        return self._requeue(and_(Study.state == StudyState.running, Study.worker_id == worker_id))

    def requeue_stale_studies(self, silent_for: timedelta) -> list[int]:
        """Put back in the queue running studies whose worker stopped heartbeating."""
        cutoff = utcnow() - silent_for
        return self._requeue(and_(Study.state == StudyState.running, Study.heartbeat_at < cutoff))

    def requeue_study(self, study_id: int, worker_id: str) -> bool:
        """Put a study this worker runs back in the queue; False when it is no longer its own."""
        return bool(self._requeue(self._run_by(study_id, worker_id)))

    def requeue_orphans(self, worker_id: str, alive: Sequence[int]) -> list[int]:
        """Put back in the queue this worker's running studies that have no process (a claim
        whose commit landed while the worker saw the connection fail)."""
        return self._requeue(
            and_(
                Study.state == StudyState.running,
                Study.worker_id == worker_id,
                Study.id.not_in(list(alive)),
            )
        )

    @staticmethod
    def _run_by(study_id: int, worker_id: str) -> Any:
        return and_(
            Study.id == study_id, Study.worker_id == worker_id, Study.state == StudyState.running
        )

    def _requeue(self, condition: Any) -> list[int]:
        ids = list(self.session.scalars(select(Study.id).where(condition).with_for_update()))
        if ids:
            self.session.execute(
                update(Study)
                .where(Study.id.in_(ids))
                .values(state=StudyState.queued, worker_id=None)
                .execution_options(synchronize_session=False)
            )
        return ids

    def heartbeat(self, study_id: int, worker_id: str) -> bool:
        """Refresh a study's heartbeat; False when the study is no longer this worker's."""
        updated = self._rowcount(
            update(Study)
            .where(self._run_by(study_id, worker_id))
            .values(heartbeat_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return updated == 1

    def _rowcount(self, statement: Any) -> int:
        result = self.session.execute(statement)
        assert isinstance(result, CursorResult)
        return int(result.rowcount)

    def cancel_requested(self, study_id: int) -> bool:
        return bool(self.session.scalar(select(Study.cancel_requested).where(Study.id == study_id)))

    def finish_run(
        self, study_id: int, worker_id: str, state: StudyState, reason: str | None
    ) -> bool:
        """End a study this worker runs; False, changing nothing, when it is no longer its own
        (another worker took it over while this one was silent)."""
        finished = self._rowcount(
            update(Study)
            .where(self._run_by(study_id, worker_id))
            .values(state=state, state_reason=reason, finished_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return finished == 1

    def database_id(self) -> str:
        """The id this database was given when its tables were made."""
        found = self.session.get(Meta, DATABASE_ID)
        if found is None:
            raise RuntimeError("the database has no database_id: run `gentune migrate`")
        return found.value

    def owns_study(self, study_id: int, worker_id: str) -> bool:
        """Whether this worker still runs the study, holding its row until the transaction ends
        (on Postgres), so a takeover cannot slip in between the check and what follows."""
        return (
            self.session.scalar(
                select(Study.id).where(self._run_by(study_id, worker_id)).with_for_update()
            )
            is not None
        )

    def finish_study(self, study: Study, state: StudyState, reason: str | None = None) -> None:
        study.state = state
        study.state_reason = reason
        study.finished_at = utcnow()
        self.session.flush()

    # --- trials --------------------------------------------------------------------------

    def create_trial(
        self,
        study_id: int,
        number: int,
        params: Mapping[str, Any],
        tune_trial_id: str | None,
        origin: str | None = None,
    ) -> Trial:
        existing = self.session.scalars(
            select(Trial).where(Trial.study_id == study_id, Trial.number == number)
        ).first()
        if existing is not None:  # a retry whose first commit landed but was never acknowledged
            return existing
        trial = Trial(
            study_id=study_id,
            number=number,
            params=dict(params),
            tune_trial_id=tune_trial_id,
            state=TrialState.pending,
            origin=origin,
        )
        self.session.add(trial)
        self.session.flush()
        return trial

    def get_trial(self, trial_id: int) -> Trial:
        trial = self.session.get(Trial, trial_id)
        if trial is None:
            raise NotFound(f"Trial {trial_id} does not exist.")
        return trial

    def list_trials(
        self,
        study_id: int,
        offset: int,
        limit: int,
        state: str | None = None,
        sort: str = "number",
        descending: bool = False,
    ) -> tuple[list[Trial], int]:
        """A page of a study's trials; ``sort`` is a column of ``TRIAL_SORT_KEYS``. Trials
        without a value sort last either way."""
        where = [Trial.study_id == study_id]
        if state is not None:
            where.append(Trial.state == state)
        column = TRIAL_SORT_KEYS[sort]
        order = [column.desc() if descending else column.asc()]
        if column.nullable:  # NULLs last both ways; on a NOT NULL column it would only cost a sort
            order.insert(0, column.is_(None))
        if sort != "number":
            order.append(Trial.number)
        trials = self.session.scalars(
            select(Trial).where(*where).order_by(*order).offset(offset).limit(limit)
        )
        count = self.session.scalar(select(func.count(Trial.id)).where(*where))
        return list(trials), int(count or 0)

    def study_revision(self, study_id: int) -> str:
        """A string that changes whenever anything shown about the study's trials changes:
        a trial is created, starts training, reports an evaluation or finishes. One indexed
        aggregate query."""
        row = self.session.execute(
            select(
                func.count(Trial.id),
                func.count(Trial.started_at),
                func.coalesce(func.sum(Trial.last_step), 0),
                func.count(Trial.finished_at),
                func.coalesce(func.max(Trial.id), 0),
            ).where(Trial.study_id == study_id)
        ).one()
        state = self.session.execute(
            select(Study.state, Study.cancel_requested).where(Study.id == study_id)
        ).first()
        if state is None:
            raise NotFound(f"Study {study_id} does not exist.")
        return "-".join(str(part) for part in (*row, *state))

    def trial_rows(self, study_id: int) -> list[Any]:
        """Every trial of a study as light rows (no ORM objects), ordered by number."""
        return list(
            self.session.execute(
                select(
                    Trial.id,
                    Trial.number,
                    Trial.state,
                    Trial.value,
                    Trial.params,
                    Trial.pruned_by,
                    Trial.last_step,
                    Trial.values,
                    Trial.feasible,
                )
                .where(Trial.study_id == study_id)
                .order_by(Trial.number)
            )
        )

    def trials_for_curves(
        self, study_id: int, direction: str, best: int, recent: int
    ) -> list[Trial]:
        """The ``best`` trials by value (any state) and the ``recent`` latest ones."""
        order = Trial.value.desc() if direction == "maximize" else Trial.value.asc()
        chosen = list(
            self.session.scalars(
                select(Trial)
                .where(Trial.study_id == study_id, Trial.value.is_not(None))
                .order_by(order, Trial.number)
                .limit(best)
            )
        )
        seen = {trial.id for trial in chosen}
        latest = self.session.scalars(
            select(Trial)
            .where(Trial.study_id == study_id)
            .order_by(Trial.number.desc())
            .limit(recent + len(seen))
        )
        chosen.extend([t for t in latest if t.id not in seen][:recent])
        return sorted(chosen, key=lambda t: t.number)

    def metric_series(self, trial_ids: Sequence[int], name: str) -> list[Any]:
        """(trial_id, step, value) rows of one metric for some trials, by trial and step."""
        if not trial_ids:
            return []
        return list(
            self.session.execute(
                select(Metric.trial_id, Metric.step, Metric.value)
                .where(Metric.trial_id.in_(list(trial_ids)), Metric.name == name)
                .order_by(Metric.trial_id, Metric.step)
            )
        )

    def count_trials(self, study_id: int) -> int:
        return int(
            self.session.scalar(select(func.count(Trial.id)).where(Trial.study_id == study_id)) or 0
        )

    def trial_counts(self, study_id: int) -> dict[str, int]:
        rows = self.session.execute(
            select(Trial.state, func.count(Trial.id))
            .where(Trial.study_id == study_id)
            .group_by(Trial.state)
        )
        counts = {state.value: 0 for state in TrialState}
        counts.update({state: int(n) for state, n in rows})
        return counts

    def budget_used(self, study_id: int) -> int:
        """Trials that count against n_trials: all but those lost with their worker."""
        return int(
            self.session.scalar(
                select(func.count(Trial.id)).where(
                    Trial.study_id == study_id,
                    or_(Trial.reason.is_(None), Trial.reason != WORKER_LOST),
                )
            )
            or 0
        )

    def evaluations_reported(self, study_id: int, metric: str) -> int:
        """How many evaluations the study's trials have reported ``metric`` at, in all."""
        return int(
            self.session.scalar(
                select(func.count(Metric.id))
                .join(Trial, Trial.id == Metric.trial_id)
                .where(Trial.study_id == study_id, Metric.name == metric)
            )
            or 0
        )

    def study_summaries(self, studies: Sequence[Study], origin: str) -> dict[int, StudySummary]:
        """Each study's ``StudySummary`` in two queries however many studies: its trials
        counted by state, and window functions that rank each study's trials by value (for
        its best) and by number within ``origin``; only the rows that carry one of those
        answers come back, and only the columns a summary shows. A single study takes
        ``_study_summary``'s three indexed queries instead, cheaper than the windows."""
        summaries = {study.id: StudySummary() for study in studies}
        if len(studies) == 1:
            return {studies[0].id: self._study_summary(studies[0], origin)}
        if not studies:
            return summaries
        ids = list(summaries)
        counted = self.session.execute(
            select(Trial.study_id, Trial.state, func.count())
            .where(Trial.study_id.in_(ids))
            .group_by(Trial.study_id, Trial.state)
        )
        for study_id, state, n in counted:
            summaries[study_id].counts[str(state)] = int(n)
        maximize = [s.id for s in studies if s.spec["objective"]["direction"] == "maximize"]
        eligible = and_(
            Trial.state == TrialState.completed,
            Trial.value.is_not(None),
            or_(Trial.feasible.is_(None), Trial.feasible.is_(True)),
        )
        unranked = case((eligible, 0), else_=1)
        signed = case((Trial.study_id.in_(maximize), -Trial.value), else_=Trial.value)
        of_origin = case((Trial.origin == origin, 1), else_=0)
        ranked = (
            select(
                Trial.id.label("trial_id"),
                (unranked == 0).label("rankable"),
                (of_origin == 1).label("is_origin"),
                func.row_number()
                .over(partition_by=Trial.study_id, order_by=(unranked, signed, Trial.number))
                .label("best_rank"),
                func.row_number()
                .over(partition_by=(Trial.study_id, of_origin), order_by=Trial.number)
                .label("origin_rank"),
            )
            .where(Trial.study_id.in_(ids))
            .subquery()
        )
        best = and_(ranked.c.best_rank == 1, ranked.c.rankable)
        first_of_origin = and_(ranked.c.origin_rank == 1, ranked.c.is_origin)
        rows = self.session.execute(
            select(
                Trial.study_id, *BRIEF_COLUMNS, best.label("best"), first_of_origin.label("first")
            )
            .join(ranked, Trial.id == ranked.c.trial_id)
            .where(or_(best, first_of_origin))
        )
        for study_id, *columns, is_best, is_first in rows:
            brief = TrialBrief(*columns)
            if is_best:
                summaries[study_id].best = brief
            if is_first:
                summaries[study_id].of_origin = brief
        return summaries

    def _study_summary(self, study: Study, origin: str) -> StudySummary:
        """One study's summary: for one study of many trials, three indexed queries cost less
        than ranking all its trials."""
        best = self.best_trial(study.id, study.spec["objective"]["direction"])
        first = self.trial_of_origin(study.id, origin)
        return StudySummary(
            counts=self.trial_counts(study.id),
            best=TrialBrief.of(best) if best is not None else None,
            of_origin=TrialBrief.of(first) if first is not None else None,
        )

    def trial_of_origin(self, study_id: int, origin: str) -> Trial | None:
        """The study's trial that ran the config queued as ``origin`` (the first, if several)."""
        return self.session.scalars(
            select(Trial)
            .where(Trial.study_id == study_id, Trial.origin == origin)
            .order_by(Trial.number)
            .limit(1)
        ).first()

    def best_trial(self, study_id: int, direction: str) -> Trial | None:
        best = self.best_trials(study_id, direction, 1)
        return best[0] if best else None

    def best_trials(self, study_id: int, direction: str, limit: int) -> list[Trial]:
        """The study's completed, feasible trials with a value, best first (ties: the earlier
        first). A trial that breaks a constraint is never among them."""
        order = Trial.value.desc() if direction == "maximize" else Trial.value.asc()
        return list(
            self.session.scalars(
                select(Trial)
                .where(*self._feasible_scored(study_id, Trial.value))
                .order_by(order, Trial.number)
                .limit(limit)
            )
        )

    # --- ratings ---------------------------------------------------------------------------

    def add_rating(
        self, trial: Trial, score: int | None, better_than: Trial | None, rater: str
    ) -> Rating:
        """Store a person's rating and update the trials' tallies in the same transaction."""
        rating = Rating(
            trial_id=trial.id,
            score=score,
            better_than=better_than.id if better_than is not None else None,
            rater=rater,
        )
        # Raters at once: the trials' rows are locked first, in id order (no deadlock between
        # opposite picks), so that the last to commit reads everyone's scores (each statement
        # reads what is committed). NO KEY UPDATE leaves the ratings' foreign keys free.
        involved = sorted({trial.id} | ({better_than.id} if better_than is not None else set()))
        self.session.execute(
            select(Trial.id)
            .where(Trial.id.in_(involved))
            .order_by(Trial.id)
            .with_for_update(key_share=True)
        )
        self.session.add(rating)
        self.session.flush()
        if score is not None:
            mean, count = self.session.execute(
                select(func.avg(Rating.score), func.count(Rating.score)).where(
                    Rating.trial_id == trial.id
                )
            ).one()
            self._set(trial.id, rating_mean=float(mean), rating_count=int(count))
        if better_than is not None:  # counted in SQL: no read-modify-write to lose
            self._set(trial.id, wins=Trial.wins + 1)
            self._set(better_than.id, losses=Trial.losses + 1)
        for changed in (trial, better_than):
            if changed is not None:
                self.session.refresh(changed)
        return rating

    def _set(self, trial_id: int, **values: Any) -> None:
        self.session.execute(
            update(Trial)
            .where(Trial.id == trial_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    def ratings_of(self, trial_id: int) -> list[Rating]:
        """The ratings of a trial: those it was given and the picks it took part in."""
        return list(
            self.session.scalars(
                select(Rating)
                .where(or_(Rating.trial_id == trial_id, Rating.better_than == trial_id))
                .order_by(Rating.id)
            )
        )

    def study_ratings(self, study_id: int) -> list[Rating]:
        return list(
            self.session.scalars(
                select(Rating)
                .join(Trial, Trial.id == Rating.trial_id)
                .where(Trial.study_id == study_id)
                .order_by(Rating.id)
            )
        )

    def pareto_candidates(self, study_id: int) -> list[Trial]:
        """Completed, feasible trials with objective values: the Pareto front lies among them."""
        return list(
            self.session.scalars(
                select(Trial)
                .where(*self._feasible_scored(study_id, Trial.values))
                .order_by(Trial.number)
            )
        )

    @staticmethod
    def _feasible_scored(study_id: int, score: Any) -> tuple[Any, ...]:
        """A study's completed trials that have ``score`` and keep its constraints."""
        return (
            Trial.study_id == study_id,
            Trial.state == TrialState.completed,
            score.is_not(None),
            or_(Trial.feasible.is_(None), Trial.feasible.is_(True)),
        )

    def trials_by_id(self, trial_ids: Sequence[int]) -> list[Trial]:
        if not trial_ids:
            return []
        return list(self.session.scalars(select(Trial).where(Trial.id.in_(list(trial_ids)))))

    def record_progress(
        self,
        trial_id: int,
        step: int,
        metrics: Mapping[str, float],
        value: float | None,
        best_step: int | None,
        placement: Mapping[str, Any],
        values: Sequence[float] | None = None,
        feasible: bool | None = None,
    ) -> bool:
        """Store one evaluation: every metric at ``step``, the trial's running best and where
        it runs. False, storing nothing, when the trial is no longer running (a worker that
        took the study over has failed it)."""
        update: dict[str, Any] = {
            "last_step": step,
            "state": TrialState.running,
            **self._placement(placement),
        }
        if best_step is not None:
            # null(), not None: a JSON column stores None as the JSON text 'null'.
            update.update(
                value=value,
                best_step=best_step,
                values=list(values) if values is not None else null(),
                feasible=feasible,
            )
        if not self._update_running_trial(trial_id, update):
            return False
        # Safe to repeat: a retried write whose first commit landed replaces, never duplicates.
        self.session.execute(delete(Metric).where(Metric.trial_id == trial_id, Metric.step == step))
        self.session.add_all(
            Metric(trial_id=trial_id, step=step, name=name, value=_storable(v))
            for name, v in metrics.items()
        )
        return True

    def record_placement(self, trial_id: int, placement: Mapping[str, Any]) -> None:
        self._update_running_trial(
            trial_id, {"state": TrialState.running, **self._placement(placement)}
        )

    def start_trial(self, trial_id: int) -> None:
        """Ray gave the pending trial its resources and starts it: it runs from now (its
        worker's own clock replaces the time with its first report)."""
        self._update_running_trial(trial_id, {"state": TrialState.running, "started_at": utcnow()})

    @staticmethod
    def _placement(placement: Mapping[str, Any]) -> dict[str, Any]:
        """Where and since when a trial runs, from what its Ray worker reports."""
        values = {k: placement[k] for k in ("node", "ray_node_id", "gpu_ids") if k in placement}
        if "started_at" in placement:
            values["started_at"] = datetime.fromtimestamp(float(placement["started_at"]), UTC)
        return values

    def _update_running_trial(self, trial_id: int, values: Mapping[str, Any]) -> bool:
        """Update the trial while it is pending or running; False when it has finished."""
        return (
            self._rowcount(
                update(Trial)
                .where(Trial.id == trial_id, Trial.state.in_(ACTIVE_TRIAL_STATES))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            == 1
        )

    def restart_trial(self, trial_id: int, attempt: int, reason: str) -> None:
        """Ray starts a trial again (its ``attempt``-th run) after its worker or node died: its
        earlier attempt's evaluations and files no longer describe it. It waits for resources
        again (pending) until Ray starts it."""
        if self._update_running_trial(
            trial_id,
            {
                "state": TrialState.pending,
                "started_at": None,
                "attempts": attempt,
                "value": None,
                "best_step": None,
                "last_step": None,
                "reason": reason,
            },
        ):
            self.session.execute(delete(Metric).where(Metric.trial_id == trial_id))
            self.session.execute(delete(Artifact).where(Artifact.trial_id == trial_id))

    def add_run_info(self, trial_id: int, info: Mapping[str, str]) -> None:
        """Merge ``info`` into what the trial already keeps about its run."""
        trial = self.get_trial(trial_id)
        trial.run_info = {**(trial.run_info or {}), **info}
        self.session.flush()

    def finish_trial(
        self,
        trial_id: int,
        state: TrialState,
        reason: str | None = None,
        prune: PruneRecord | None = None,
    ) -> None:
        values: dict[str, Any] = {"state": state, "reason": reason, "finished_at": utcnow()}
        if prune is not None:
            values.update(
                pruned_by=prune.by,
                pruned_step=prune.step,
                prune_values={k: _json_number(v) for k, v in prune.values.items()},
            )
        self.session.execute(
            update(Trial)
            .where(Trial.id == trial_id, Trial.state.in_(ACTIVE_TRIAL_STATES))
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    def fail_running_trials(
        self, study_id: int, reason: str, only: Sequence[int] | None = None
    ) -> list[Trial]:
        """Fail the study's pending and running trials (``only`` those ids, when given)."""
        query = select(Trial).where(
            Trial.study_id == study_id, Trial.state.in_(ACTIVE_TRIAL_STATES)
        )
        if only is not None:
            query = query.where(Trial.id.in_(list(only)))
        trials = list(self.session.scalars(query))
        for trial in trials:
            trial.state = TrialState.failed
            trial.reason = reason
            trial.finished_at = utcnow()
        self.session.flush()
        return trials

    def metrics_of_trial(self, trial_id: int, names: Sequence[str] | None = None) -> list[Metric]:
        query = select(Metric).where(Metric.trial_id == trial_id)
        if names:
            query = query.where(Metric.name.in_(list(names)))
        return list(self.session.scalars(query.order_by(Metric.step, Metric.name)))

    def study_metrics(self, study_id: int) -> list[Any]:
        """Every metric value of every trial of a study: rows of (trial_id, step, name, value),
        by trial, step and name."""
        return list(
            self.session.execute(
                select(Metric.trial_id, Metric.step, Metric.name, Metric.value)
                .join(Trial, Trial.id == Metric.trial_id)
                .where(Trial.study_id == study_id)
                .order_by(Metric.trial_id, Metric.step, Metric.name)
            )
        )

    def all_trials(self, study_id: int) -> list[Trial]:
        return list(
            self.session.scalars(
                select(Trial).where(Trial.study_id == study_id).order_by(Trial.number, Trial.id)
            )
        )

    def metrics_at_step(self, trial_id: int, step: int) -> dict[str, float | None]:
        rows = self.session.execute(
            select(Metric.name, Metric.value).where(
                Metric.trial_id == trial_id, Metric.step == step
            )
        )
        return {name: value for name, value in rows}

    # --- artifacts -----------------------------------------------------------------------

    def upsert_artifact(
        self, trial_id: int, kind: str, path: str, step: int, size_bytes: int
    ) -> None:
        artifact = self.session.scalars(
            select(Artifact).where(Artifact.trial_id == trial_id, Artifact.kind == kind)
        ).first()
        if artifact is None:
            artifact = Artifact(
                trial_id=trial_id, kind=kind, path=path, step=step, size_bytes=size_bytes
            )
            self.session.add(artifact)
        else:
            artifact.path, artifact.step, artifact.size_bytes = path, step, size_bytes
            artifact.updated_at = utcnow()
        self.session.flush()

    def delete_artifacts(self, trial_id: int, kinds: Sequence[str]) -> None:
        self.session.execute(
            delete(Artifact).where(Artifact.trial_id == trial_id, Artifact.kind.in_(list(kinds)))
        )

    def artifacts_of_trial(self, trial_id: int) -> list[Artifact]:
        return list(
            self.session.scalars(
                select(Artifact).where(Artifact.trial_id == trial_id).order_by(Artifact.kind)
            )
        )

    def get_artifact(self, trial_id: int, kind: str) -> Artifact:
        artifact = self.session.scalars(
            select(Artifact).where(Artifact.trial_id == trial_id, Artifact.kind == kind)
        ).first()
        if artifact is None:
            raise NotFound(f"Trial {trial_id} has no '{kind}' checkpoint (yet).")
        return artifact

    # --- monitoring ----------------------------------------------------------------------

    def count_studies_by_state(self) -> dict[str, int]:
        """How many studies are in each state, every state present (0 when none)."""
        counts = {state.value: 0 for state in StudyState}
        rows = self.session.execute(select(Study.state, func.count(Study.id)).group_by(Study.state))
        counts.update({state: int(n) for state, n in rows})
        return counts

    def count_trials_by_state(self) -> dict[str, int]:
        """How many trials are in each state, over all studies, every state present."""
        counts = {state.value: 0 for state in TrialState}
        rows = self.session.execute(select(Trial.state, func.count(Trial.id)).group_by(Trial.state))
        counts.update({state: int(n) for state, n in rows})
        return counts

    def count_pruned_trials_by_rule(self) -> dict[str | None, int]:
        """Pruned trials by what stopped them (``pruned_by``; None where it was not recorded)."""
        rows = self.session.execute(
            select(Trial.pruned_by, func.count(Trial.id))
            .where(Trial.state == TrialState.pruned)
            .group_by(Trial.pruned_by)
        )
        return {pruned_by: int(n) for pruned_by, n in rows}

    def trial_duration_histogram(
        self, bounds: Sequence[float]
    ) -> dict[str, tuple[list[int], float]]:
        """Finished trials' durations (creation to finish) by final state, in one aggregate
        query: for each state, the cumulative count at or under each bound followed by the
        total count, and the sum of the durations in seconds."""
        if self.session.get_bind().dialect.name == "sqlite":
            # Julian-day floats are off by tens of microseconds; SQLite keeps milliseconds.
            days = func.julianday(Trial.finished_at) - func.julianday(Trial.created_at)
            seconds = func.round(days * 86400, 3)
        else:
            seconds = func.date_part("epoch", Trial.finished_at - Trial.created_at)
        rows = self.session.execute(
            select(
                Trial.state,
                func.count(Trial.id),
                func.coalesce(func.sum(seconds), 0.0),
                *(func.count(Trial.id).filter(seconds <= bound) for bound in bounds),
            )
            .where(Trial.finished_at.is_not(None))
            .group_by(Trial.state)
        )
        return {
            state: ([int(n) for n in at_or_under] + [int(count)], float(total))
            for state, count, total, *at_or_under in rows
        }

    def running_studies_liveness(self) -> tuple[int, datetime | None]:
        """The workers running at least one study, and the oldest heartbeat among running
        studies (None when no study runs)."""
        workers, oldest = self.session.execute(
            select(func.count(Study.worker_id.distinct()), func.min(Study.heartbeat_at)).where(
                Study.state == StudyState.running
            )
        ).one()
        return int(workers), as_utc(oldest)


def optuna_study_name(study_id: int) -> str:
    """The name of a gentune study's Optuna study in the shared storage."""
    return f"gentune-{study_id}"


def _json_number(value: float) -> float | str:
    """JSON has no NaN or infinity (Postgres refuses them): those are kept as text."""
    return float(value) if math.isfinite(value) else str(float(value))


def _storable(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
