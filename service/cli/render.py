"""What the ``gentune`` command prints: plain lines in the API's words, tables that keep their
width in a pipe, the studies table, and the redrawn view of ``gentune watch``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NoReturn

import typer
from rich.console import Console, Group
from rich.measure import Measurement
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

console = Console()
err_console = Console(stderr=True)

FINISHED_STUDY_STATES = ("completed", "failed", "cancelled")
TRIAL_STATES = ("completed", "pruned", "failed", "running", "pending")


def say(text: str, *, end: str = "\n", to: Console = console) -> None:
    """Print text as it is: no rich markup or highlighting, and no wrapping at 80 columns
    when the output is not a terminal (names, reasons and URLs come from the API)."""
    to.print(text, end=end, markup=False, highlight=False, soft_wrap=True)


def fail(message: str) -> NoReturn:
    """Print ``error: MESSAGE`` on stderr and end the command with exit code 1."""
    say(f"error: {message}", to=err_console)
    raise typer.Exit(1)


def print_table(table: Table) -> None:
    """Print a table; where stdout is not a terminal (a pipe, a CI log) give it all the width
    it needs instead of wrapping its cells at 80 columns."""
    if console.is_terminal:
        console.print(table)
        return
    width = Measurement.get(console, console.options.update_width(10_000), table).maximum
    Console(width=max(width, console.width)).print(table)


def studies_table(page: Any, state: str | None) -> Table:
    """A page of ``GET /studies`` as a table: a row per study, newest first."""
    listed = page["data"]
    table = Table(
        "id",
        "name",
        "trainer",
        "state",
        "trials",
        "objective",
        "best",
        "vs defaults",
        "elapsed",
        title=f"{len(listed)} of {page['count']}" + (f" {state}" if state else "") + " studies",
        title_justify="left",
    )
    for study in listed:
        objective = study["objective"]
        table.add_row(
            str(study["id"]),
            Text(study["name"]),
            Text(study["trainer"]),
            study["state"],
            _trials_cell(study),
            Text(f"{objective['direction'][:3]} {objective['metric']}"),
            f"{study['best']['value']:.4g}" if study["best"] else "",
            _versus_defaults(study.get("baseline")),
            elapsed(study),
        )
    return table


def _trials_cell(study: Any) -> str:
    """``3/4 (1 pruned)``: trials finished of the budget, and those not completed."""
    counts = study["trial_counts"]
    others = ", ".join(f"{counts[key]} {key}" for key in TRIAL_STATES[1:] if counts.get(key))
    return f"{finished_trials(study)}/{study['n_trials']}" + (f" ({others})" if others else "")


def status_line(study: Any) -> str:
    """``gentune status``'s first line: state, trial counts and the best value."""
    counts = study["trial_counts"]
    best = study["best"]
    return (
        f"study {study['id']} {study['name']}: {study['state']}"
        + (f" ({study['state_reason']})" if study["state_reason"] else "")
        + f"; trials {counts['completed']} completed, {counts['pruned']} pruned, "
        f"{counts['failed']} failed, {counts['running']} running"
        + (f", {counts['pending']} pending" if counts.get("pending") else "")
        + f" of {study['n_trials']}"
        + (
            f"; best {study['objective']['metric']} {best['value']:.4g} (trial {best['trial_id']})"
            if best
            else ""
        )
    )


def watch_view(study: Any, trials: list[Any], count: int) -> Group:
    """The view ``gentune watch`` redraws on a terminal: progress bar, counts, top trials."""
    done, n_trials = finished_trials(study), study["n_trials"]
    progress = Table.grid(padding=(0, 1))
    progress.add_row(
        ProgressBar(total=max(n_trials, 1), completed=min(done, n_trials), width=30),
        Text(f"{done}/{n_trials} trials finished"),
        Text(elapsed(study), style="dim"),
    )
    return Group(
        Text(f"study {study['id']} ({study['name']}) {_state_words(study)}"),
        progress,
        Text(f"{_count_words(study)}; {_best_words(study)}"),
        trials_table(study, trials, count, one_line_rows=True),
    )


def trials_table(study: Any, trials: list[Any], count: int, *, one_line_rows: bool) -> Table:
    """The given trials, best first, with what stopped each pruned or failed one and why."""
    objective = study["objective"]
    table = Table(
        title=f"top {len(trials)} of {count} trials by {objective['metric']} "
        f"({objective['direction']})",
        title_justify="left",
    )
    for name in ("trial", "number"):
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    table.add_column("state", no_wrap=True, min_width=9)
    table.add_column(Text(objective["metric"]), justify="right", no_wrap=True, min_width=8)
    table.add_column("last step", justify="right", no_wrap=True, min_width=9)
    table.add_column("pruned by", no_wrap=True, max_width=32)
    # A one-line reason gets what the other columns leave, or rich squeezes them to nothing.
    table.add_column(
        "reason",
        no_wrap=one_line_rows,
        overflow="ellipsis",
        max_width=max(20, console.width - 105) if one_line_rows else None,
    )
    for trial in trials:
        table.add_row(
            str(trial["id"]),
            str(trial["number"]),
            trial["state"],
            "" if trial["value"] is None else f"{trial['value']:.4g}",
            "" if trial["last_step"] is None else str(trial["last_step"]),
            Text(trial["pruned_by"] or ""),
            Text(trial["reason"] or ""),
        )
    return table


def study_line(study: Any) -> str:
    """One line on a study: its state and why, its trials so far and its best value."""
    return (
        f"study {study['id']} ({study['name']}) {_state_words(study)}: "
        f"{_progress_words(study)}; {_best_words(study)}"
    )


def _state_words(study: Any) -> str:
    if study["state_reason"]:
        return f"{study['state']} ({study['state_reason']})"
    if study["cancel_requested"] and study["state"] not in FINISHED_STUDY_STATES:
        return f"{study['state']} (cancel requested)"
    return str(study["state"])


def _progress_words(study: Any) -> str:
    counts = study["trial_counts"]
    words = (
        f"{finished_trials(study)}/{study['n_trials']} trials finished ({counts['completed']} "
        f"completed, {counts['pruned']} pruned, {counts['failed']} failed)"
    )
    return words + "".join(
        f", {counts[state]} {state}" for state in ("running", "pending") if counts.get(state)
    )


def _count_words(study: Any) -> str:
    counts = study["trial_counts"]
    return ", ".join(
        f"{counts.get(state, 0)} {state}"
        for state in TRIAL_STATES
        if state != "pending" or counts.get(state)
    )


def _best_words(study: Any) -> str:
    best = study["best"]
    defaults = _defaults_words(study.get("baseline"))
    if best is None:
        return "no completed trial yet" + (f"; {defaults}" if defaults else "")
    words = (
        f"best {study['objective']['metric']} {best['value']:.4g} "
        f"(trial {best['trial_id']}, number {best['number']})"
    )
    return words + (f"; {defaults}" if defaults else "")


def _defaults_words(baseline: Any) -> str:
    """The baseline trial in a few words, after the best: ``defaults 0.85 (+9%)``."""
    if not baseline:
        return ""
    if baseline["state"] != "completed" or baseline["value"] is None:
        return f"defaults {baseline['state']}"
    gain = baseline["improvement"]
    return f"defaults {baseline['value']:.4g}" + (f" ({gain:+.0%})" if gain is not None else "")


def _versus_defaults(baseline: Any) -> str:
    """The studies table's cell: the best's gain over the defaults, or the defaults' fate."""
    if not baseline:
        return ""
    if baseline["state"] in ("pruned", "failed"):
        return f"defaults {baseline['state']}"
    if baseline["improvement"] is not None:
        return f"{baseline['improvement']:+.0%}"
    return ""


def finished_trials(study: Any) -> int:
    """Trials of the study that have ended: completed, pruned or failed."""
    counts = study["trial_counts"]
    return int(counts["completed"] + counts["pruned"] + counts["failed"])


def elapsed(study: Any) -> str:
    """How long the study has run (or ran), from the service's timestamps."""
    if study["started_at"] is None:
        return ""
    end = _moment(study["finished_at"]) if study["finished_at"] else datetime.now(UTC)
    seconds = max(0, int((end - _moment(study["started_at"])).total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if days:
        return f"{days}d{hours % 24:02d}h"
    if hours:
        return f"{hours}h{minutes % 60:02d}m"
    if minutes:
        return f"{minutes}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _moment(iso: str) -> datetime:
    moment = datetime.fromisoformat(iso)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
