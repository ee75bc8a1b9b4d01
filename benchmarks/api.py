"""Latency of the study page's API calls on a large study, next to optuna-dashboard's API.

Seeds one finished study (default 5,000 trials x 50 evaluation steps, 8 metrics per
evaluation) into a database of its own, twice over: gentune's rows (studies, trials, metrics)
and the very same trials in Optuna's storage, which is what optuna-dashboard reads. A second
run reuses a seeded study; ``--fresh`` drops the database and seeds again.

Then it starts the service (``gentune serve --no-worker``: one uvicorn worker process) as a
subprocess and drives it from this process with an open-loop schedule: requests go out at a
fixed rate whether or not earlier ones have come back, and each latency is measured from the
request's *scheduled* send time, so time spent queueing (in the client's connection pool or
the server) counts. Measured, in one run on the same study:

- each call once at a time with nothing else going on (unloaded);
- the six calls the study page polls, one of each per round, at ``--rate`` for
  ``--duration`` s: plain GETs, and the same with ``If-None-Match`` as a browser re-polling
  sends it (the server's cached views then answer 304);
- optuna-dashboard's study detail (``/optuna/api/studies/<id>?after=0``: the first load of
  its study page, every trial with its intermediate values) and its re-poll
  (``?after=<trials>``: what its page asks for later), each back to back for
  ``--duration`` s, which also gives what one worker can serve of them;
- the study detail open-loop at ``--rate``, or, when one worker cannot serve that, at half
  of what it served back to back (said so in the printout).

With ``--list-studies N`` (default 1,000; 0 skips it) the database also holds N small
finished studies (``--list-trials`` trials each, the first the trainer's defaults, no metric
rows), and the study list (``GET /studies``) is measured as the studies page and the CLI
call it: its first page, its last page and a state filter, one at a time and open-loop at
``--list-rate`` (default 100/s). The target is a p99 of at most 50 ms under that load.

    .venv/bin/python benchmarks/api.py [--trials 5000] [--steps 50] [--rate 200]
        [--duration 30] [--fresh] [--database-url postgresql+psycopg2://...]
    .venv/bin/python benchmarks/api.py --trials 200 --steps 10 --duration 5 \
        --list-studies 50   # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import optuna
from sqlalchemy import create_engine, delete, func, insert, select, text, update
from sqlalchemy.engine import make_url

from gentune.service.config import Settings
from gentune.service.db.models import Metric, Study, StudyState, Trial, TrialState
from gentune.service.db.repository import Repository
from gentune.service.db.session import get_engine, is_sqlite, migrate, optuna_storage, session_scope
from gentune.service.schemas.study import StudySpec
from gentune.service.studies.space import distribution
from gentune.service.studies.validation import resolved_definition, validate_spec
from gentune.service.studies.warm_start import BASELINE

DEFAULT_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/gentune_bench_api"
METRICS = (
    "fid",
    "kid",
    "g_loss",
    "d_loss",
    "grad_norm_g",
    "grad_norm_d",
    "stability/diversity",
    "stability/d_accuracy",
)
PAGE_TOTAL = "study page, all six calls"
TRIAL_SPACING_S = 20.0
"""Seconds between trial starts in the synthetic history (two trials at a time)."""
STEP_S = 0.8
"""Seconds per evaluation step in the synthetic history."""
FAILURES = (
    "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
    "the trainer reported no finite value of fid",
    "ray.exceptions.RayActorError: the actor died unexpectedly before finishing this task",
)


def definition(trials: int, steps: int) -> dict[str, Any]:
    """search_spaces/dcgan_digits.yaml, sized for the benchmark (its search space is fixed
    here because the synthetic results below are a function of these very params)."""
    return {
        "name": f"api-bench-{trials}x{steps}",
        "description": "Synthetic history for benchmarks/api.py.",
        "trainer": "dcgan",
        "params": {
            "dataset": "digits",
            "image_size": 16,
            "features": "domain",
            "epochs": steps,
            "eval_samples": 1000,
            "width": 64,
        },
        "search_space": {
            "lr_g": {"type": "float", "low": 1.0e-4, "high": 2.0e-3, "log": True},
            "lr_d": {"type": "float", "low": 1.0e-4, "high": 2.0e-3, "log": True},
            "beta1": {"type": "categorical", "choices": [0.0, 0.5]},
            "loss": {"type": "categorical", "choices": ["bce", "hinge", "lsgan"]},
            "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
            "z_dim": {"type": "categorical", "choices": [32, 64, 128]},
        },
        "objective": {"metric": "fid", "direction": "minimize"},
        "sampler": {"type": "tpe", "seed": 0, "n_startup_trials": 6},
        "pruner": {"type": "median", "n_startup_trials": 4, "n_warmup_steps": 5},
        "budget": {"n_trials": trials, "max_concurrent": 2},
        "resources": {"cpu": 1, "gpu": 0},
    }


# --- a synthetic study -------------------------------------------------------------------


@dataclass
class SyntheticTrial:
    """One trial's history: its params, its FID at each evaluated step and how it ended."""

    number: int
    params: dict[str, Any]
    state: TrialState
    fid: list[float]
    seed: int
    created_at: datetime
    diverged_at: int | None = None
    pruned_by: str | None = None
    reason: str | None = None
    prune_values: dict[str, float] | None = None

    @property
    def last_step(self) -> int:
        return len(self.fid) - 1

    @property
    def value(self) -> float:
        return min(self.fid)

    @property
    def best_step(self) -> int:
        return self.fid.index(self.value)

    def at(self, step: int) -> datetime:
        return self.created_at + timedelta(seconds=(step + 1) * STEP_S)

    @property
    def finished_at(self) -> datetime:
        return self.at(self.last_step)

    def row(self, study_id: int) -> dict[str, Any]:
        """Its columns in gentune's trials table that every seeded trial has."""
        return {
            "study_id": study_id,
            "number": self.number,
            "state": self.state.value,
            "params": self.params,
            "value": self.value,
            "best_step": self.best_step,
            "last_step": self.last_step,
            "reason": self.reason,
            "pruned_by": self.pruned_by,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }

    def metric_rows(self, trial_id: int) -> Iterator[dict[str, Any]]:
        """Every metric at every evaluated step, roughly as a DCGAN on digits reports them."""
        rng = random.Random(self.seed)
        g_base = {"bce": 1.6, "hinge": 0.9, "lsgan": 0.45}[self.params["loss"]]
        d_base = {"bce": 1.1, "hinge": 1.4, "lsgan": 0.22}[self.params["loss"]]
        for step, fid in enumerate(self.fid):
            blowup = 0 if self.diverged_at is None else max(0, step - self.diverged_at)
            values = {
                "fid": fid,
                "kid": max(0.0, fid / 900 * (1 + 0.1 * rng.gauss(0, 1))),
                "g_loss": g_base * (1 + 0.15 * rng.gauss(0, 1)) * 4.0**blowup,
                "d_loss": d_base * (1 + 0.1 * rng.gauss(0, 1)) / 2.0**blowup,
                "grad_norm_g": rng.lognormvariate(math.log(5), 0.4) * 10.0**blowup,
                "grad_norm_d": rng.lognormvariate(math.log(3), 0.4),
                "stability/diversity": min(1.0, max(0.01, 0.35 + 0.08 * rng.gauss(0, 1))),
                "stability/d_accuracy": min(1.0, max(0.0, 0.72 + 0.08 * rng.gauss(0, 1))),
            }
            at = self.at(step)
            for name in METRICS:
                yield {
                    "trial_id": trial_id,
                    "step": step,
                    "name": name,
                    "value": values[name],
                    "created_at": at,
                }


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _sample_params(rng: random.Random, focused: bool) -> dict[str, Any]:
    """Random params, or (``focused``, as a sampler that has learnt would) near the good ones."""
    if not focused:
        return {
            "lr_g": _log_uniform(rng, 1e-4, 2e-3),
            "lr_d": _log_uniform(rng, 1e-4, 2e-3),
            "beta1": rng.choice([0.0, 0.5]),
            "loss": rng.choice(["bce", "hinge", "lsgan"]),
            "batch_size": rng.choice([32, 64, 128]),
            "z_dim": rng.choice([32, 64, 128]),
        }

    def near(centre: float) -> float:
        return min(2e-3, max(1e-4, centre * 10 ** rng.gauss(0, 0.2)))

    return {
        "lr_g": near(3e-4),
        "lr_d": near(2e-4),
        "beta1": 0.5 if rng.random() < 0.9 else 0.0,
        "loss": "hinge" if rng.random() < 0.6 else rng.choice(["bce", "lsgan"]),
        "batch_size": 64 if rng.random() < 0.6 else rng.choice([32, 128]),
        "z_dim": rng.choice([32, 64, 128]),
    }


def _fid_floor(params: dict[str, Any], rng: random.Random) -> float:
    """Where a config's FID levels off: best near lr_g 3e-4, lr_d 2e-4, beta1 0.5, hinge."""
    floor = (
        6.0
        + 30 * math.log10(params["lr_g"] / 3e-4) ** 2
        + 30 * math.log10(params["lr_d"] / 2e-4) ** 2
        + (8.0 if params["beta1"] == 0.0 else 0.0)
        + {"hinge": 0.0, "lsgan": 2.0, "bce": 4.0}[params["loss"]]
        + 3 * abs(math.log2(params["batch_size"] / 64))
        + 0.75 * abs(math.log2(params["z_dim"] / 64))
    )
    return floor * rng.lognormvariate(0, 0.15)


def synthesize(trials: int, steps: int, seed: int = 0) -> list[SyntheticTrial]:
    """A study's history: FID falls over each trial's steps and, as the sampler learns, over
    the trials; about 40% are pruned (median pruner, or diverging), a few fail."""
    rng = random.Random(seed)
    started = datetime.now(UTC) - timedelta(seconds=trials * TRIAL_SPACING_S + 3600)
    warmup = min(5, max(0, steps - 2))
    out: list[SyntheticTrial] = []
    floors: list[float] = []
    for number in range(trials):
        focused = rng.random() < min(0.85, 1.5 * number / max(1, trials))
        params = _sample_params(rng, focused)
        floor = _fid_floor(params, rng)
        start, tau = rng.uniform(180, 320), steps * rng.uniform(0.12, 0.35)
        fid = [
            (floor + (start - floor) * math.exp(-step / tau)) * (1 + 0.05 * rng.gauss(0, 1))
            for step in range(steps)
        ]
        floors.append(floor)
        trial = SyntheticTrial(
            number, params, TrialState.completed, fid, rng.getrandbits(32), _when(started, number)
        )
        risky = max(0.0, math.log10(max(params["lr_g"], params["lr_d"]) / 5e-4) / math.log10(4))
        if steps >= 4 and rng.random() < 0.05 + 0.2 * risky:
            _diverge(trial, rng.randint(min(warmup, steps - 3), steps - 3))
        elif rng.random() < 0.03:
            at = rng.randint(0, steps - 1)
            trial.fid = trial.fid[: at + 1]
            trial.state, trial.reason = TrialState.failed, rng.choice(FAILURES)
        elif number >= 4 and steps >= 2 and floor > _quantile(floors[-500:], 0.62):
            _prune_by_median(trial, rng.randint(warmup, max(warmup, steps // 3)), out)
        out.append(trial)
    return out


def _when(started: datetime, number: int) -> datetime:
    return started + timedelta(seconds=number * TRIAL_SPACING_S)


def _diverge(trial: SyntheticTrial, at: int) -> None:
    """FID and the generator's loss blow up after ``at``; the divergence rule stops it two
    evaluations later (its patience)."""
    stop = at + 2
    trial.fid = [v * (1.3 ** max(0, step - at)) for step, v in enumerate(trial.fid[: stop + 1])]
    trial.diverged_at = at
    trial.state = TrialState.pruned
    trial.pruned_by = "stability/divergence"
    g_loss = 1.2 * 4.0**2
    trial.prune_values = {"g_loss": g_loss}
    trial.reason = (
        f"divergence at step {stop}: g_loss {g_loss:.4g} above 10x its running minimum "
        f"for 2 evaluations"
    )


def _prune_by_median(trial: SyntheticTrial, at: int, before: Sequence[SyntheticTrial]) -> None:
    others = [t.fid[at] for t in before[-400:] if t.state == TrialState.completed]
    trial.fid = trial.fid[: at + 1]
    trial.state = TrialState.pruned
    trial.pruned_by = "pruner/median"
    best = trial.value
    trial.prune_values = {"fid": trial.fid[-1]}
    trial.reason = (
        f"median pruner at step {at}: best fid so far {best:.4g} > median "
        f"{statistics.median(others) if others else best:.4g} of {len(others)} completed "
        f"trials at this step"
    )


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the database --------------------------------------------------------------------------


def prepare_database(url: str, fresh: bool) -> None:
    """Create the benchmark's database (dropped first with ``fresh``) and gentune's schema."""
    if is_sqlite(url):
        path = make_url(url).database
        if fresh and path and Path(path).exists():
            Path(path).unlink()
    else:
        target = make_url(url)
        name = target.database
        assert name, "the database URL names no database"
        admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            if fresh:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            exists = conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    migrate(url)


def seeded_study(url: str, name: str, trials: int) -> int | None:
    """The id of a fully seeded study called ``name``; a partly seeded one is deleted.

    A study is marked completed only once both its gentune and Optuna rows are in.
    """
    with session_scope(url) as session:
        study = session.scalars(select(Study).where(Study.name == name)).first()
        if study is None:
            return None
        study_id, optuna_name, state = study.id, study.optuna_study_name, study.state
    storage = optuna_storage(url)
    try:
        optuna_id: int | None = storage.get_study_id_from_name(optuna_name)
    except KeyError:
        optuna_id = None
    if (
        state == StudyState.completed
        and optuna_id is not None
        and len(storage.get_all_trials(optuna_id, deepcopy=False)) == trials
    ):
        return study_id
    print(f"  study {study_id} ({name}) is only partly seeded: deleting it", flush=True)
    if optuna_id is not None:
        storage.delete_study(optuna_id)
    with session_scope(url) as session:
        session.execute(delete(Study).where(Study.id == study_id))
    return None


def seed(url: str, trials: int, steps: int) -> int:
    """Create the study and write its history into gentune's tables and Optuna's storage."""
    spec = StudySpec.model_validate(definition(trials, steps))
    settings = Settings(database_url=url, max_trials=max(trials, 10_000), api_token=None)
    trainer = validate_spec(spec, settings)
    history = synthesize(trials, steps)
    with session_scope(url) as session:
        study = Repository(session).create_study(
            spec.name, spec.trainer, resolved_definition(spec, trainer)
        )
        study.state = StudyState.running
        study.started_at = history[0].created_at
        study_id, optuna_name = study.id, study.optuna_study_name
    counts = {state: sum(t.state == state for t in history) for state in TrialState}
    n_metrics = sum(len(t.fid) for t in history) * len(METRICS)
    print(
        f"  study {study_id}: {trials} trials ({counts[TrialState.completed]} completed, "
        f"{counts[TrialState.pruned]} pruned, {counts[TrialState.failed]} failed), "
        f"{n_metrics:,} metric rows",
        flush=True,
    )
    ids = _insert_gentune_rows(url, study_id, history, n_metrics)
    _insert_optuna_trials(url, optuna_name, study_id, spec, history, ids)
    with session_scope(url) as session:
        session.execute(
            update(Study)
            .where(Study.id == study_id)
            .values(state=StudyState.completed, finished_at=history[-1].finished_at)
        )
    return study_id


LIST_PREFIX = "api-list-bench"
LIST_STATES = (
    *[StudyState.completed] * 16,
    StudyState.failed,
    StudyState.cancelled,
    StudyState.running,
    StudyState.queued,
)
"""The mix of states the listed studies cycle through (mostly completed)."""


def seed_list(url: str, studies: int, trials: int) -> None:
    """``studies`` small studies of ``trials`` trials each (their rows only: the study list
    reads no metric and no Optuna row), unless they are there already; a partial set from an
    interrupted run is deleted first."""
    prefix = f"{LIST_PREFIX}-{studies}x{trials}-"
    with session_scope(url) as session:
        have = session.scalar(select(func.count(Study.id)).where(Study.name.like(f"{prefix}%")))
        if have == studies:
            print(f"reusing the {studies:,} listed studies ({prefix}*)")
            return
        if have:
            print(f"  {have:,} of {studies:,} listed studies are there: deleting them", flush=True)
            session.execute(delete(Study).where(Study.name.like(f"{prefix}%")))
    print(f"seeding {studies:,} studies of {trials} trials for the study list ...", flush=True)
    started = time.perf_counter()
    spec = StudySpec.model_validate(definition(trials, 10))
    settings = Settings(database_url=url, max_trials=10_000, api_token=None)
    resolved = resolved_definition(spec, validate_spec(spec, settings))
    engine = get_engine(url)
    for first in range(0, studies, 100):
        numbers = range(first, min(studies, first + 100))
        histories = {i: synthesize(trials, 10, seed=1000 + i) for i in numbers}
        with engine.begin() as conn:
            ids = conn.execute(
                insert(Study).returning(Study.id, Study.name),
                [_listed_study(prefix, i, resolved, histories[i]) for i in numbers],
            ).all()
            by_name = {name: study_id for study_id, name in ids}
            conn.execute(
                insert(Trial),
                [
                    row
                    for i in numbers
                    for row in _listed_trials(
                        by_name[f"{prefix}{i:05d}"], histories[i], LIST_STATES[i % len(LIST_STATES)]
                    )
                ],
            )
    print(f"  seeded in {time.perf_counter() - started:.0f} s", flush=True)


def _listed_study(
    prefix: str, i: int, resolved: dict[str, Any], history: list[SyntheticTrial]
) -> dict[str, Any]:
    state = LIST_STATES[i % len(LIST_STATES)]
    running = state in (StudyState.running, StudyState.completed, StudyState.failed)
    return {
        "name": f"{prefix}{i:05d}",
        "trainer": "dcgan",
        "spec": {**resolved, "name": f"{prefix}{i:05d}"},
        "state": state,
        "optuna_study_name": f"{prefix}{i:05d}",
        "created_at": history[0].created_at,
        "started_at": history[0].created_at if running or state == StudyState.cancelled else None,
        "finished_at": history[-1].finished_at if state not in _UNFINISHED else None,
    }


_UNFINISHED = (StudyState.running, StudyState.queued)


def _listed_trials(
    study_id: int, history: list[SyntheticTrial], study_state: StudyState
) -> list[dict[str, Any]]:
    """The trial rows of a listed study: none while it is queued; a running study's last
    trial is still running."""
    if study_state == StudyState.queued:
        return []
    rows = [
        {
            **t.row(study_id),
            "origin": BASELINE if t.number == 0 else None,
            "started_at": t.created_at,
        }
        for t in history
    ]
    if study_state == StudyState.running:
        rows[-1].update(
            state=TrialState.running.value, reason=None, pruned_by=None, finished_at=None
        )
    return rows


def _insert_gentune_rows(
    url: str, study_id: int, history: list[SyntheticTrial], n_metrics: int
) -> dict[int, int]:
    """Bulk-insert trials, then their metrics in batches; returns trial number -> id."""
    started = time.perf_counter()
    engine = get_engine(url)
    rows = [
        {
            **t.row(study_id),
            "tune_trial_id": f"{study_id:04x}_{t.number:05d}",
            "pruned_step": t.last_step if t.state == TrialState.pruned else None,
            "prune_values": t.prune_values,
            "node": f"10.0.0.{1 + t.number % 2}",
            "run_info": {
                "device": "cuda: NVIDIA A10G",
                "dataset": "digits 16px, 1797 images",
                "optuna": optuna.__version__,
                "torch": "2.13.0",
            },
        }
        for t in history
    ]
    with engine.begin() as conn:
        for chunk in _chunks(rows, 1000):
            conn.execute(insert(Trial), chunk)
        ids = {
            number: trial_id
            for trial_id, number in conn.execute(
                select(Trial.id, Trial.number).where(Trial.study_id == study_id)
            )
        }
    print(f"  gentune trials written ({time.perf_counter() - started:.1f} s)", flush=True)
    done, reported = 0, 0.0
    batch: list[dict[str, Any]] = []
    for t in history:
        batch.extend(t.metric_rows(ids[t.number]))
        if len(batch) >= 20_000 or t is history[-1]:
            with engine.begin() as conn:
                conn.execute(insert(Metric), batch)
            done += len(batch)
            batch = []
            if done / n_metrics - reported >= 0.1 or done == n_metrics:
                reported = done / n_metrics
                elapsed = time.perf_counter() - started
                print(
                    f"  gentune metrics: {done:,} / {n_metrics:,} rows ({reported:.0%}), "
                    f"{elapsed:.0f} s",
                    flush=True,
                )
    return ids


def _insert_optuna_trials(
    url: str,
    optuna_name: str,
    study_id: int,
    spec: StudySpec,
    history: list[SyntheticTrial],
    ids: dict[int, int],
) -> None:
    """The same trials through Optuna's own API (numbers match gentune's), as the worker's
    searcher leaves them: PRUNED and FAIL without a value, the FID at each step reported."""
    started = time.perf_counter()
    storage = optuna_storage(url)
    study = optuna.create_study(study_name=optuna_name, storage=storage, direction="minimize")
    study.set_user_attr("gentune_study_id", study_id)
    space = {name: distribution(param) for name, param in spec.search_space.items()}
    states = {
        TrialState.completed: optuna.trial.TrialState.COMPLETE,
        TrialState.pruned: optuna.trial.TrialState.PRUNED,
        TrialState.failed: optuna.trial.TrialState.FAIL,
    }
    batch_size = max(1, min(250, len(history) // 10))
    for first in range(0, len(history), batch_size):
        frozen = []
        for t in history[first : first + batch_size]:
            attrs: dict[str, Any] = {"gentune_trial_id": ids[t.number]}
            if t.pruned_by is not None:
                attrs["gentune_pruned_by"] = t.pruned_by
            trial = optuna.trial.create_trial(
                state=states[t.state],
                params=t.params,
                distributions=space,
                value=t.value if t.state == TrialState.completed else None,
                intermediate_values=dict(enumerate(t.fid)),
                user_attrs=attrs,
            )
            trial.datetime_start = t.created_at.astimezone().replace(tzinfo=None)
            trial.datetime_complete = t.finished_at.astimezone().replace(tzinfo=None)
            frozen.append(trial)
        study.add_trials(frozen)
        done = first + len(frozen)
        print(
            f"  optuna trials: {done:,} / {len(history):,} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )


def _chunks(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for first in range(0, len(rows), size):
        yield rows[first : first + size]


def settle(url: str) -> None:
    """Leave a Postgres database as a long-running service would be: the seeded tables vacuumed and
    analyzed (autovacuum does it some time later, in the middle of a measurement) and the
    load's dirty pages written out (a checkpoint's writeback stalls the whole machine)."""
    with get_engine(url).connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("VACUUM ANALYZE"))
        conn.execute(text("CHECKPOINT"))


def database_facts(url: str, study_id: int) -> str:
    with session_scope(url) as session:
        n_trials = session.scalar(select(func.count(Trial.id)).where(Trial.study_id == study_id))
        n_metrics = session.scalar(
            select(func.count(Metric.id))
            .join(Trial, Trial.id == Metric.trial_id)
            .where(Trial.study_id == study_id)
        )
        if is_sqlite(url):
            size = Path(make_url(url).database or "").stat().st_size
            version = "SQLite"
        else:
            size = int(session.scalar(text("SELECT pg_database_size(current_database())")) or 0)
            version = str(session.scalar(text("SHOW server_version")))
    return (
        f"{version}, database {size / 2**20:,.0f} MiB; study {study_id}: "
        f"{n_trials:,} trials, {n_metrics:,} metric rows"
    )


# --- the server ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(url: str, home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "GENTUNE_DATABASE_URL": url,
        "GENTUNE_ARTIFACT_DIR": str(home / "artifacts"),
    }
    env.pop("GENTUNE_API_TOKEN", None)
    log = (home / "service.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "gentune.service.cli", "serve", "--no-worker", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


def wait_healthy(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the service did not answer /api/v1/health in 120 s")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads), from /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- load ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One API call: a label for the table, the path, and headers (If-None-Match)."""

    label: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Sample:
    call: str
    latency_s: float | None
    """From the scheduled send time to the whole response read; None when it failed."""
    lag_s: float
    """How late the client started the request against its schedule."""
    status: int | None = None
    size: int = 0
    error: str | None = None
    due_s: float = 0.0
    """When it was scheduled, in seconds from the start of its run."""


@dataclass
class Run:
    """The samples of one measurement and the conditions it ran under."""

    title: str
    rate: float | None
    samples: list[Sample]
    seconds: float
    server_cpu_s: float | None


async def _request(client: httpx.AsyncClient, call: Call, due: float) -> Sample:
    loop = asyncio.get_running_loop()
    lag = loop.time() - due
    try:
        response = await client.get(call.path, headers=call.headers)
    except httpx.HTTPError as exc:
        return Sample(call.label, None, lag, error=type(exc).__name__)
    return Sample(call.label, loop.time() - due, lag, response.status_code, len(response.content))


@dataclass(frozen=True)
class Load:
    """The client's side of every loaded run."""

    base: str
    duration: float
    warmup: float
    timeout: float
    connections: int


async def open_loop(
    client: httpx.AsyncClient,
    calls: Sequence[Call],
    rate: float,
    duration: float,
    timeout: float,
    title: str | None,
) -> tuple[list[Sample], float]:
    """Send ``calls`` round-robin at ``rate`` per second for ``duration`` seconds, each at
    its scheduled time whatever the earlier ones are doing; wait for stragglers up to
    ``timeout`` and count those still out as failed. Progress is printed under ``title``."""
    loop = asyncio.get_running_loop()
    n = max(1, round(rate * duration))
    start = loop.time() + 0.05
    tasks: list[asyncio.Task[Sample]] = []
    report_at = start + 5
    for i in range(n):
        due = start + i / rate
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        tasks.append(asyncio.create_task(_request(client, calls[i % len(calls)], due)))
        if title is not None and loop.time() >= report_at:
            report_at += 5
            finished = sum(task.done() for task in tasks)
            print(
                f"    {title}: {loop.time() - start:4.0f} s, {len(tasks):,} sent, "
                f"{finished:,} done, {len(tasks) - finished:,} in flight",
                flush=True,
            )
    sent_s = loop.time() - start
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    samples = []
    for i, task in enumerate(tasks):
        if task in done:
            sample = task.result()
        else:
            sample = Sample(calls[i % len(calls)].label, None, 0.0, error="unfinished")
        sample.due_s = i / rate
        samples.append(sample)
    if title is not None:
        print(
            f"    {title}: {len(tasks):,} sent in {sent_s:.1f} s, "
            f"{len(done):,} back in {loop.time() - start:.1f} s",
            flush=True,
        )
    return samples, loop.time() - start


async def _loaded_run(load: Load, pid: int, calls: Sequence[Call], rate: float, title: str) -> Run:
    limits = httpx.Limits(
        max_connections=load.connections, max_keepalive_connections=load.connections
    )
    async with httpx.AsyncClient(
        base_url=load.base, limits=limits, timeout=httpx.Timeout(load.timeout)
    ) as client:
        if load.warmup > 0:  # opens the pool's connections; its samples are dropped
            await open_loop(client, calls, rate, load.warmup, load.timeout, None)
        before = cpu_seconds(pid)
        samples, seconds = await open_loop(client, calls, rate, load.duration, load.timeout, title)
        after = cpu_seconds(pid)
    cpu = None if before is None or after is None else after - before
    return Run(title, rate, samples, seconds, cpu)


def measure(load: Load, pid: int, calls: Sequence[Call], rate: float, title: str) -> Run:
    """One open-loop run at ``rate`` after ``load.warmup`` seconds of the same, unrecorded.

    The client's garbage collector is off meanwhile: this process holds what ``service``
    imports (torch, optuna), and a full collection over it stalls the sending loop ~0.15 s.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        return asyncio.run(_loaded_run(load, pid, calls, rate, title))
    finally:
        gc.enable()
        gc.unfreeze()


def one_at_a_time(
    base: str, pid: int, calls: Sequence[Call], rounds: int, budget_s: float, title: str
) -> Run:
    """Each call in turn, back to back, ``rounds`` times or until ``budget_s`` has passed
    (at least once): no request waits for another, so this is the unloaded latency, and
    requests per second is what one worker can serve of these calls."""
    samples: list[Sample] = []
    started = time.perf_counter()
    deadline = started + budget_s
    before = cpu_seconds(pid)
    with httpx.Client(base_url=base, timeout=600) as client:
        for _ in range(rounds):
            for call in calls:
                sent = time.perf_counter()
                response = client.get(call.path, headers=call.headers)
                samples.append(
                    Sample(
                        call.label,
                        time.perf_counter() - sent,
                        0.0,
                        response.status_code,
                        len(response.content),
                    )
                )
            if time.perf_counter() > deadline:
                break
    after = cpu_seconds(pid)
    cpu = None if before is None or after is None else after - before
    return Run(title, None, samples, time.perf_counter() - started, cpu)


# --- figures -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of non-empty ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass
class Row:
    label: str
    requests: int
    errors: int
    bad_status: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    size: int | None

    @classmethod
    def of(cls, label: str, samples: Sequence[Sample], size: int | None = None) -> Row:
        latencies = [s.latency_s * 1000 for s in samples if s.latency_s is not None]
        ok = [s.size for s in samples if s.status == 200]
        return cls(
            label,
            len(samples),
            sum(s.error is not None for s in samples),
            sum(s.status is not None and s.status not in (200, 304) for s in samples),
            percentile(latencies, 50) if latencies else None,
            percentile(latencies, 99) if latencies else None,
            max(latencies) if latencies else None,
            size if size is not None else (int(statistics.median(ok)) if ok else 0),
        )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def print_table(rows: Sequence[Row]) -> None:
    width = max(len(row.label) for row in rows)
    print(
        f"  {'endpoint':<{width}} {'requests':>8} {'errors':>6} {'non-2xx':>7} "
        f"{'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {'bytes':>11}"
    )
    for row in rows:
        size = "-" if row.size is None else f"{row.size:,}"
        print(
            f"  {row.label:<{width}} {row.requests:>8,} {row.errors:>6} {row.bad_status:>7} "
            f"{_ms(row.p50_ms):>9} {_ms(row.p99_ms):>9} {_ms(row.max_ms):>9} {size:>11}"
        )


def run_rows(run: Run, calls: Sequence[Call], total_label: str) -> list[Row]:
    """A row per call, and one over them all (its bytes: one of each) when ``total_label``."""
    rows = [Row.of(call.label, [s for s in run.samples if s.call == call.label]) for call in calls]
    if total_label and len(calls) > 1:
        per_round = sum(row.size or 0 for row in rows)
        labels = {call.label for call in calls}
        mine = [s for s in run.samples if s.call in labels]
        rows.append(Row.of(total_label, mine, size=per_round))
    return rows


def print_run(run: Run, calls: Sequence[Call], total_label: str) -> list[Row]:
    """The run's table and what it cost the server; returns its rows (the total last)."""
    rows = run_rows(run, calls, total_label)
    back = [s for s in run.samples if s.latency_s is not None]
    lags = [s.lag_s * 1000 for s in run.samples if s.error != "unfinished"]
    offered = "one at a time" if run.rate is None else f"at {run.rate:g}/s offered"
    print(
        f"\n{run.title}: {len(run.samples):,} requests {offered}, "
        f"{len(back) / run.seconds:,.2f}/s answered over {run.seconds:.1f} s"
    )
    print_table(rows)
    notes = []
    if lags and run.rate is not None:
        notes.append(f"client send lag p99 {percentile(lags, 99):.1f} ms")
    if run.server_cpu_s is not None and back:
        notes.append(
            f"server process CPU {run.server_cpu_s:.1f} s = "
            f"{run.server_cpu_s / len(back) * 1000:.2f} ms/request, "
            f"{run.server_cpu_s / run.seconds:.0%} of one core"
        )
    errors = sorted({s.error for s in run.samples if s.error})
    statuses = sorted({s.status for s in run.samples if s.status not in (None, 200, 304)})
    if errors:
        notes.append(f"errors: {', '.join(e for e in errors if e)}")
    if statuses:
        notes.append(f"statuses: {', '.join(str(s) for s in statuses)}")
    if run.rate is not None and len(back) / run.seconds < 0.9 * run.rate:
        notes.append(
            f"it did not keep up: {len(back) / run.seconds:,.2f}/s answered of {run.rate:g}/s "
            f"offered, so its latencies include a growing queue"
        )
    if run.rate is not None and back:
        p50 = percentile([s.latency_s for s in back if s.latency_s is not None], 50)
        bar = max(0.1, 10 * p50)
        slow = [s for s in run.samples if s.latency_s is None or s.latency_s > bar]
        if slow:
            notes.append(
                f"{len(slow):,} over {bar * 1000:,.0f} ms, scheduled "
                f"{min(s.due_s for s in slow):.1f}-{max(s.due_s for s in slow):.1f} s into the run"
            )
    if any(s.status == 304 for s in run.samples):
        notes.append(f"{sum(s.status == 304 for s in run.samples):,} answered 304")
    print("  (" + "; ".join(notes) + ")")
    return rows


# --- main ----------------------------------------------------------------------------------


def check_ok(base: str, calls: Sequence[Call]) -> dict[str, tuple[float, httpx.Response]]:
    """Fetch each call once (a cold request: views are computed and cached); all must be 200."""
    first: dict[str, tuple[float, httpx.Response]] = {}
    with httpx.Client(base_url=base, timeout=600) as client:
        for call in calls:
            started = time.perf_counter()
            response = client.get(call.path)
            first[call.label] = (time.perf_counter() - started, response)
            if response.status_code != 200:
                raise RuntimeError(
                    f"GET {call.path} answered {response.status_code}: {response.text[:500]}"
                )
    return first


def throughput(run: Run) -> str:
    """Requests per second of a back-to-back run, and the server's CPU time per request."""
    n = len(run.samples)
    said = f"{run.title}: {n:,} requests in {run.seconds:.1f} s = {n / run.seconds:,.2f}/s"
    if run.server_cpu_s is not None:
        said += f", server CPU {run.server_cpu_s / n * 1000:,.1f} ms/request"
    return said


def lower_rate(capacity: float, target: float) -> float:
    """``target`` when at most half of ``capacity``, else half of it (two significant
    digits, rounded down): a rate one worker should serve without queueing for ever."""
    half = capacity / 2
    if half >= target:
        return target
    digits = -math.floor(math.log10(half)) + 1
    return math.floor(half * 10**digits) / 10**digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--fresh", action="store_true", help="Drop the database and seed again.")
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=50, help="Evaluations per full trial.")
    parser.add_argument("--rate", type=float, default=200.0, help="Requests per second offered.")
    parser.add_argument("--duration", type=float, default=30.0, help="Seconds of load per run.")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="Unrecorded seconds before each loaded run."
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="Per-request timeout (s).")
    parser.add_argument("--connections", type=int, default=256, help="Client connection pool.")
    parser.add_argument(
        "--no-revalidate", action="store_true", help="Skip the If-None-Match (304) run."
    )
    parser.add_argument(
        "--list-studies", type=int, default=1000, help="Studies for the study list (0: skip it)."
    )
    parser.add_argument("--list-trials", type=int, default=20, help="Trials per listed study.")
    parser.add_argument(
        "--list-rate", type=float, default=100.0, help="Study-list requests per second offered."
    )
    parser.add_argument(
        "--only", choices=("page", "list"), help="Measure only the study page or the study list."
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the server is stopped too
    url = args.database_url

    print(
        f"machine: {os.cpu_count()} CPUs ({platform.machine()}, {platform.system()} "
        f"{platform.release()}), Python {platform.python_version()}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"database: {make_url(url).render_as_string(hide_password=True)}")
    prepare_database(url, args.fresh)
    page: list[Call] = []
    optuna_calls: list[Call] = []
    if args.only != "list":
        page, optuna_calls = seed_study_page(url, args)
    if args.list_studies and args.only != "page":
        seed_list(url, args.list_studies, args.list_trials)
    if not is_sqlite(url):
        started = time.perf_counter()
        settle(url)
        print(f"  vacuumed, analyzed and checkpointed in {time.perf_counter() - started:.0f} s")

    with tempfile.TemporaryDirectory(prefix="gentune-bench-api-") as tmp:
        home = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(url, home, port)
        try:
            wait_healthy(base, server, home / "service.log")
            print(
                f"service: gentune serve --no-worker on port {port}: one uvicorn worker process "
                f"(pid {server.pid}, access log on), load generated from this process "
                f"(asyncio + httpx, {args.connections} connections)"
            )
            if page:
                run_benchmark(args, base, server.pid, page, optuna_calls)
            if args.list_studies and args.only != "page":
                run_list_benchmark(args, base, server.pid)
        finally:
            stop_server(server)


def seed_study_page(url: str, args: argparse.Namespace) -> tuple[list[Call], list[Call]]:
    """The large study (seeded unless it is there) and the calls that measure its page:
    the study page's six, and optuna-dashboard's detail, re-poll and study list."""
    name = definition(args.trials, args.steps)["name"]
    study_id = seeded_study(url, name, args.trials)
    if study_id is None:
        print(f"seeding {name} ...", flush=True)
        started = time.perf_counter()
        study_id = seed(url, args.trials, args.steps)
        print(f"  seeded in {time.perf_counter() - started:.0f} s", flush=True)
    else:
        print(f"reusing the seeded study {study_id} ({name}); --fresh seeds again")
    print(f"  {database_facts(url, study_id)}")
    optuna_id = optuna_storage(url).get_study_id_from_name(f"gentune-{study_id}")
    page = [
        Call("study", f"/api/v1/studies/{study_id}"),
        Call("columns", f"/api/v1/studies/{study_id}/columns"),
        Call("curves", f"/api/v1/studies/{study_id}/curves?best=30&recent=20"),
        Call("trials", f"/api/v1/studies/{study_id}/trials?sort=number&order=desc&limit=50"),
        Call("importances", f"/api/v1/studies/{study_id}/importances"),
        Call("best", f"/api/v1/studies/{study_id}/best"),
    ]
    return page, [
        Call("optuna-dashboard detail", f"/optuna/api/studies/{optuna_id}?after=0"),
        Call("optuna-dashboard re-poll", f"/optuna/api/studies/{optuna_id}?after={args.trials}"),
        Call("optuna-dashboard studies", "/optuna/api/studies"),
    ]


def run_benchmark(
    args: argparse.Namespace, base: str, pid: int, page: list[Call], optuna_calls: list[Call]
) -> None:
    """Check every call answers 200, then measure unloaded and under load; print the figures."""
    detail, repoll, summaries = optuna_calls
    print(f"load average before measuring: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\nfirst requests (cold: each view computed, then cached by its server)")
    first = check_ok(base, [*page, *optuna_calls])
    for label, (seconds, response) in first.items():
        print(f"  {label:<26} {seconds * 1000:>9,.1f} ms  {len(response.content):>11,} bytes")
    etags = {label: r.headers.get("etag") for label, (_, r) in first.items()}

    print("\nunloaded: one request at a time ...", flush=True)
    unloaded_page = one_at_a_time(
        base, pid, [*page, summaries], 20, 20, "study page + optuna-dashboard studies"
    )
    # Long enough to take in optuna-dashboard's trial-cache refreshes (10 s TTL) as they come.
    unloaded_optuna = [
        one_at_a_time(base, pid, [call], 10**6, args.duration, f"{call.label}, back to back")
        for call in (detail, repoll)
    ]
    unloaded = [
        *run_rows(unloaded_page, page, PAGE_TOTAL),
        *run_rows(unloaded_optuna[0], [detail], ""),
        *run_rows(unloaded_optuna[1], [repoll], ""),
        *run_rows(unloaded_page, [summaries], ""),
    ]

    load = Load(base, args.duration, args.warmup, args.timeout, args.connections)
    print(
        f"load: {args.rate:g} requests/s offered for {args.duration:g} s per run "
        f"(after {args.warmup:g} s of warm-up, not recorded) ...",
        flush=True,
    )
    runs = [(measure(load, pid, page, args.rate, "gentune study page, plain GETs"), page)]
    if not args.no_revalidate:
        revalidating = [
            Call(c.label, c.path, {"If-None-Match": etags[c.label]} if etags[c.label] else {})
            for c in page
        ]
        title = "gentune study page, If-None-Match as a re-polling browser sends it"
        runs.append((measure(load, pid, revalidating, args.rate, title), revalidating))
    capacity = len(unloaded_optuna[0].samples) / unloaded_optuna[0].seconds
    rate = lower_rate(capacity, args.rate)
    note = None
    if rate < args.rate:
        note = (
            f"optuna-dashboard's study detail: one at a time it answers {capacity:,.2f}/s, "
            f"all one worker serves, so {args.rate:g}/s would queue without bound: it is "
            f"measured at {rate:g}/s, half that, instead"
        )
        print(f"  {note}", flush=True)
    detail_run = measure(load, pid, [detail], rate, f"{detail.label} at {rate:g}/s")
    runs.append((detail_run, [detail]))

    print("\n" + "=" * 100)
    print("results: latency from each request's scheduled send time, so queueing counts;")
    print("bytes: the response body (no compression on either side); 304s have none")
    print("\nunloaded, one request at a time:")
    print_table(unloaded)
    for run in (unloaded_page, *unloaded_optuna):
        print(f"  ({throughput(run)})")
    totals = [print_run(run, calls, PAGE_TOTAL)[-1] for run, calls in runs]
    if note is not None:
        print(f"\nnote: {note}")

    page_unloaded = next(r for r in unloaded if r.label == PAGE_TOTAL)
    detail_unloaded = next(r for r in unloaded if r.label == detail.label)
    print("\noptuna-dashboard's study detail (after=0) p50 / gentune's study-page p50 (all six):")
    if page_unloaded.p50_ms and detail_unloaded.p50_ms:
        print(
            f"  unloaded:   {detail_unloaded.p50_ms:,.1f} ms / {page_unloaded.p50_ms:,.1f} ms = "
            f"{detail_unloaded.p50_ms / page_unloaded.p50_ms:,.0f}x"
        )
    plain, detail_loaded = totals[0], totals[-1]
    if plain.p50_ms and detail_loaded.p50_ms:
        print(
            f"  under load: {detail_loaded.p50_ms:,.1f} ms at {rate:g}/s / "
            f"{plain.p50_ms:,.1f} ms at {args.rate:g}/s = "
            f"{detail_loaded.p50_ms / plain.p50_ms:,.0f}x"
        )
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def run_list_benchmark(args: argparse.Namespace, base: str, pid: int) -> None:
    """The study list as the studies page (50 a page) and ``gentune list`` (20) ask for it,
    one at a time and then open-loop at ``--list-rate``; prints whether its p99 meets 50 ms."""
    total = httpx.get(f"{base}/api/v1/studies", params={"limit": 1}).json()["count"]
    calls = [
        Call("studies, first page", "/api/v1/studies?offset=0&limit=50"),
        Call("studies, last page", f"/api/v1/studies?offset={max(0, total - 50)}&limit=50"),
        Call("studies, completed", "/api/v1/studies?state=completed&offset=0&limit=50"),
        Call("gentune list (20)", "/api/v1/studies?limit=20"),
    ]
    label = "study list, all four"
    print(f"\nstudy list: {total:,} studies in the database", flush=True)
    for call, (seconds, response) in check_ok(base, calls).items():
        print(f"  {call:<26} {seconds * 1000:>9,.1f} ms  {len(response.content):>11,} bytes")
    unloaded = one_at_a_time(base, pid, calls, 50, 30, "study list, one at a time")
    load = Load(base, args.duration, args.warmup, args.timeout, args.connections)
    title = f"study list at {args.list_rate:g}/s"
    loaded = measure(load, pid, calls, args.list_rate, title)
    print("\n" + "=" * 100)
    print(f"study list ({total:,} studies), unloaded, one request at a time:")
    print_table(run_rows(unloaded, calls, label))
    print(f"  ({throughput(unloaded)})")
    total_row = print_run(loaded, calls, label)[-1]
    verdict = (
        "met"
        if total_row.p99_ms is not None and total_row.p99_ms <= 50 and not total_row.errors
        else "NOT met"
    )
    print(
        f"\ntarget p99 <= 50 ms at {args.list_rate:g}/s over {total:,} studies: {verdict} "
        f"(p99 {_ms(total_row.p99_ms)} ms)"
    )


if __name__ == "__main__":
    main()
