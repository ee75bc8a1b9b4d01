"""The ``gentune`` command: run the service or a worker, migrate, and talk to a running service."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import httpx
import typer
import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.measure import Measurement
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from gentune.service.config import Settings, export_data_root, get_settings
from gentune.service.db.session import redacted

app = typer.Typer(
    help="gentune: hyperparameter optimization for generative models.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

UrlOption = Annotated[
    str, typer.Option("--url", envvar="GENTUNE_URL", help="Base URL of the gentune service.")
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="GENTUNE_API_TOKEN", help="API token (sent on reads too)."),
]
DEFAULT_URL = "http://127.0.0.1:8000"
StudyStateName = Literal["queued", "running", "completed", "failed", "cancelled"]
FINISHED_STUDY_STATES = ("completed", "failed", "cancelled")
# Answers of a service that is restarting or behind a proxy that lost it: worth a retry.
TRANSIENT_STATUSES = frozenset({502, 503, 504})
POLL_TIMEOUT_S = 10.0
TRIAL_STATES = ("completed", "pruned", "failed", "running")


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    worker: Annotated[
        bool, typer.Option(help="Also run a worker (the one-command default).")
    ] = True,
) -> None:
    """Run the REST API, and by default a worker beside it."""
    import uvicorn

    from gentune.service.app import create_app
    from gentune.service.auth import LOOPBACK_HOSTS, TokenFileError, host_name
    from gentune.service.db.session import migrate
    from gentune.service.scheduling.worker import _die_with_parent

    _logging()
    settings = get_settings()
    try:
        api = create_app(settings, run_migrations=False)
    except TokenFileError as error:
        console.print(f"[red]gentune: cannot start: {error}[/red]")
        raise typer.Exit(2) from None
    migrate(settings.database_url)
    _bind_artifact_store(settings)
    worker_process = None
    if worker:
        worker_process = subprocess.Popen(
            [sys.executable, "-m", "gentune.service.cli", "worker"], preexec_fn=_die_with_parent
        )
    console.print(
        f"gentune: API on http://{host}:{port} (docs at /docs), database "
        f"{redacted(settings.database_url)}, artifacts in {settings.artifact_dir}"
    )
    if host_name(host) not in LOOPBACK_HOSTS and not api.state.tokens.enabled:
        logging.getLogger("gentune").warning(
            "serving on %s with no token: anyone who can reach port %d can submit and cancel "
            "studies; set GENTUNE_API_TOKEN (or GENTUNE_API_TOKENS_FILE)",
            host,
            port,
        )
    try:
        uvicorn.run(api, host=host, port=port, log_level="info")
    finally:
        if worker_process is not None:
            worker_process.send_signal(signal.SIGTERM)
            try:
                worker_process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                worker_process.kill()


@app.command()
def worker() -> None:
    """Run a worker alone: claim queued studies and run them on Ray (scale out with more)."""
    from gentune.service.artifacts import StoreOfAnotherDatabase
    from gentune.service.scheduling.worker import Worker

    _logging()
    the_worker = Worker(get_settings())

    def stop(_signum: int, _frame: Any) -> None:
        the_worker.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        the_worker.run()
    except StoreOfAnotherDatabase as error:
        console.print(f"[red]gentune: cannot start: {error}[/red]")
        raise typer.Exit(2) from None


def _bind_artifact_store(settings: Settings) -> None:
    from gentune.service.artifacts import StoreOfAnotherDatabase
    from gentune.service.scheduling.worker import bind_artifact_store

    try:
        bind_artifact_store(settings)
    except StoreOfAnotherDatabase as error:
        console.print(f"[red]gentune: cannot start: {error}[/red]")
        raise typer.Exit(2) from None


@app.command()
def migrate() -> None:
    """Create or upgrade gentune's tables in GENTUNE_DATABASE_URL."""
    from gentune.service.db.session import migrate as run_migrations

    settings = get_settings()
    run_migrations(settings.database_url)
    console.print(f"database {redacted(settings.database_url)} is up to date")


@app.command()
def submit(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Study definition (YAML or JSON).")
    ],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Submit a study definition; print the study's id and the URL of its page."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        _fail(f"{file} is not UTF-8 text")
    # Sent as text, not parsed here: the service then names the line of each error.
    study = _request(
        "POST",
        url,
        "/studies/yaml",
        token,
        source=file,
        content=text.encode(),
        headers={"Content-Type": "application/yaml"},
    )
    _say(f"study {study['id']} ({study['name']}) queued: {study['page_url']}")


@app.command()
def studies(
    url: UrlOption = DEFAULT_URL,
    state: Annotated[
        StudyStateName | None, typer.Option(help="Only studies in this state.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many to list.")] = 20,
) -> None:
    """List studies, newest first: state, trials finished, best value and time taken."""
    params: dict[str, Any] = {"limit": limit}
    if state is not None:
        params["state"] = state
    page = _request("GET", url, "/studies", params=params)
    listed = page["data"]
    if not listed:
        console.print(f"no {state} studies" if state else "no studies", highlight=False)
        return
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
        counts = study["trial_counts"]
        others = ", ".join(
            f"{counts[key]} {key}" for key in ("pruned", "failed", "running") if counts[key]
        )
        objective = study["objective"]
        table.add_row(
            str(study["id"]),
            Text(study["name"]),
            Text(study["trainer"]),
            study["state"],
            f"{_finished_trials(study)}/{study['n_trials']}" + (f" ({others})" if others else ""),
            Text(f"{objective['direction'][:3]} {objective['metric']}"),
            f"{study['best']['value']:.4g}" if study["best"] else "",
            _versus_defaults(study.get("baseline")),
            _elapsed(study),
        )
    _print_table(table)


@app.command()
def status(
    study_id: int,
    url: UrlOption = DEFAULT_URL,
    why: Annotated[
        bool, typer.Option("--why", help="List every pruned trial with its reason.")
    ] = False,
) -> None:
    """Show a study's state, trial counts and best value, and what stopped pruned trials."""
    study = _request("GET", url, f"/studies/{study_id}")
    counts = study["trial_counts"]
    best = study["best"]
    console.print(
        f"study {study['id']} {study['name']}: {study['state']}"
        + (f" ({study['state_reason']})" if study["state_reason"] else "")
        + f"; trials {counts['completed']} completed, {counts['pruned']} pruned, "
        f"{counts['failed']} failed, {counts['running']} running of {study['n_trials']}"
        + (
            f"; best {study['objective']['metric']} {best['value']:.4g} (trial {best['trial_id']})"
            if best
            else ""
        ),
        soft_wrap=True,
    )
    if study.get("baseline"):
        _say(f"vs defaults: {study['baseline']['summary']}")
    if counts["pruned"] == 0:
        return
    pruned = _request(
        "GET", url, f"/studies/{study_id}/trials", params={"state": "pruned", "limit": 1000}
    )["data"]
    by = Counter(trial["pruned_by"] or "unrecorded" for trial in pruned)
    _say("pruned by: " + ", ".join(f"{name} {n}" for name, n in sorted(by.items())))
    for trial in pruned if why else []:
        _say(f"  trial {trial['id']}: {trial['reason']}")


@app.command()
def watch(
    study_id: int,
    url: UrlOption = DEFAULT_URL,
    top: Annotated[
        int, typer.Option(min=1, max=100, help="How many of the best trials to show.")
    ] = 10,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between looks at the study.")
    ] = 2.0,
    patience: Annotated[
        float,
        typer.Option(min=0, help="Seconds to keep retrying an unreachable service before failing."),
    ] = 30.0,
) -> None:
    """Follow a study until it ends: its progress and its top trials, then a summary.

    A terminal gets a view redrawn in place; a pipe or a CI log gets a line per change."""
    watching = _StudyWatch(url, study_id, top, interval, patience)
    try:
        study = watching.live() if console.is_terminal else watching.lines()
    except KeyboardInterrupt:
        err_console.print("stopped watching; the study keeps running", highlight=False)
        raise typer.Exit(130) from None
    _say(f"{_study_line(study)}; {study['page_url']}")


@app.command()
def best(
    study_id: int,
    url: UrlOption = DEFAULT_URL,
    download: Annotated[
        Path | None, typer.Option(help="Also save config.yaml and checkpoint.pt in this folder.")
    ] = None,
) -> None:
    """Print the best config of a study as YAML (a multi-objective study's Pareto set too);
    optionally download it and its checkpoint."""
    result = _request("GET", url, f"/studies/{study_id}/best")
    shown: dict[str, Any] = {
        "trial_id": result["trial_id"],
        "value": result["value"],
        "step": result["step"],
        "config": result["config"],
    }
    baseline = result.get("baseline")
    if baseline:
        shown["baseline"] = {
            key: baseline[key] for key in ("trial_id", "state", "value", "improvement", "summary")
        }
    if result.get("pareto"):
        shown["pareto"] = [
            {"trial_id": p["trial_id"], **p["values"], "params": p["params"]}
            for p in result["pareto"]
        ]
    text = yaml.safe_dump(shown, sort_keys=False)
    _say(text, end="")
    if download is None:
        return
    download.mkdir(parents=True, exist_ok=True)
    config_file = download / "config.yaml"
    config_file.write_text(yaml.safe_dump(result["config"], sort_keys=False))
    if result["checkpoint_url"]:
        checkpoint_file = download / "checkpoint.pt"
        checkpoint_file.write_bytes(_download(result["checkpoint_url"]))
        saved = f"saved {config_file} and {checkpoint_file} (step {result['step']})"
    else:
        saved = f"saved {config_file}; trial {result['trial_id']} kept no checkpoint"
    _say(saved)


@app.command()
def refine(
    study_id: int,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    factor: Annotated[
        float,
        typer.Option(min=0.01, max=1.0, help="Each numeric range's new width, as a share."),
    ] = 0.5,
    trials: Annotated[
        int | None, typer.Option(min=1, help="The follow-up's n_trials; default: the same.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Write the definition to this file instead of printing.")
    ] = None,
    submit: Annotated[bool, typer.Option(help="Submit the follow-up study at once.")] = False,
) -> None:
    """A follow-up study narrowed around a study's best trial, warm-started from its best
    trials: printed as YAML (or written to --output) to edit, or submitted with --submit."""
    params: dict[str, Any] = {"factor": factor}
    if trials is not None:
        params["n_trials"] = trials
    definition = _request("GET", url, f"/studies/{study_id}/refined", token, params=params)
    text = yaml.safe_dump(definition, sort_keys=False)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        _say(f"wrote {output}; submit it with: gentune submit {output}")
    elif not submit:
        _say(text, end="")
    if submit:
        study = _request("POST", url, "/studies", token, json=definition)
        _say(f"study {study['id']} ({study['name']}) queued: {study['page_url']}")


@app.command()
def export(
    study_id: int,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    out: Annotated[Path, typer.Option(help="Folder to write the files in.")] = Path("."),
) -> None:
    """Write a study's record: study-ID.json (definition, trials, configs, every metric at
    every step), study-ID.trials.csv (one row per trial) and study-ID.metrics.csv."""
    out.mkdir(parents=True, exist_ok=True)
    for fmt, suffix in (
        ("json", "json"),
        ("trials.csv", "trials.csv"),
        ("metrics.csv", "metrics.csv"),
    ):
        try:
            response = _send(
                "GET",
                url,
                f"/studies/{study_id}/export",
                token,
                params={"format": fmt},
                timeout=300,
            )
        except httpx.HTTPError as exc:
            _fail(f"cannot reach the gentune service at {url}: {exc}")
        if response.status_code >= 400:
            _json_or_fail(response)
        path = out / f"study-{study_id}.{suffix}"
        path.write_bytes(response.content)
        _say(f"wrote {path} ({len(response.content):,} bytes)")


@app.command()
def reproduce(
    trial_id: int,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    tolerance: Annotated[
        float, typer.Option(min=0.0, help="Allowed difference, relative to max(1, |value|).")
    ] = 1e-4,
) -> None:
    """Run a finished trial again in this process, on CPU, from its manifest (config, seed,
    torch threads) and compare every recorded metric at every step; exit 1 on a difference."""
    import torch

    from gentune.service.scheduling.trial_entry import device_info
    from gentune.service.studies.reproduce import COMPARED_FACTS, ReproduceError, compare, run_again
    from gentune.trainers.registry import get_trainer

    export_data_root(get_settings())
    manifest = _request("GET", url, f"/trials/{trial_id}/manifest", token)
    if manifest["state"] == "running":
        _fail(f"trial {trial_id} is still running; reproduce it once it has ended")
    device = torch.device("cpu")
    last = max((p["step"] for ps in manifest["metrics"].values() for p in ps), default=0)
    workdir = tempfile.TemporaryDirectory(prefix="gentune-reproduce-")
    init = manifest["config"].get("init_from")
    if init:  # a fine-tuned trial starts from its source's checkpoint: fetch it
        response = _send(
            "GET",
            url,
            f"/trials/{init['trial']}/checkpoint",
            token,
            params={"kind": init["kind"]},
            timeout=300,
        )
        if response.status_code >= 400:
            _json_or_fail(response)
        start = Path(workdir.name) / "init.pt"
        start.write_bytes(response.content)
        manifest["config"]["init_from"] = {**init, "checkpoint": str(start)}
    _say(
        f"trial {trial_id} ({manifest['trainer']}, {manifest['state']}, seed "
        f"{manifest['seed']}): training again on CPU up to step {last}"
    )
    try:
        again, said = run_again(
            manifest, device, on_step=lambda step: _say(f"  step {step}/{last}", to=err_console)
        )
    except ReproduceError as exc:
        _fail(str(exc))
    here = {**device_info(device), **said}
    facts = Table("fact", "recorded", "here", title="run")
    for key in COMPARED_FACTS:
        recorded, now = manifest["run_info"].get(key, "–"), here.get(key, "–")
        facts.add_row(key, recorded, now if now == recorded else f"[yellow]{now}[/yellow]")
    _print_table(facts)
    trainer = get_trainer(manifest["trainer"])
    timing = {name for name, spec in trainer.metrics.items() if spec.timing} if trainer else set()
    checks = compare(manifest["metrics"], again, tolerance, timing)
    table = Table("metric", "steps", "largest difference", "at step", "", title="metrics")
    for check in checks:
        verdict = "[green]same[/green]" if check.ok else f"[red]differs[/red] {check.note}"
        table.add_row(
            check.name, str(check.steps), f"{check.max_diff:.3g}", str(check.worst_step), verdict
        )
    _print_table(table)
    skipped = sorted(set(manifest["metrics"]) & timing)
    if skipped:
        _say(f"not compared (timings, different on every run): {', '.join(skipped)}")
    differ = [c.name for c in checks if not c.ok]
    if differ:
        _fail(f"trial {trial_id} did not reproduce within {tolerance:g}: {', '.join(differ)}")
    _say(
        f"trial {trial_id} reproduced: {len(checks)} metrics at every recorded step within "
        f"{tolerance:g} (largest difference {max((c.max_diff for c in checks), default=0):.3g})"
    )


@app.command()
def rate(
    trial_id: int,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    score: Annotated[
        int | None, typer.Option(min=1, max=5, help="1 (poor) to 5 (excellent).")
    ] = None,
    better_than: Annotated[
        int | None, typer.Option(help="Another trial of the study whose samples look worse.")
    ] = None,
) -> None:
    """Rate a trial's samples (look at them with `gentune sample` or on its page): a score,
    or a pick of them over another trial's. Stored with your token's name."""
    body = {k: v for k, v in (("score", score), ("better_than", better_than)) if v is not None}
    rating = _request("POST", url, f"/trials/{trial_id}/ratings", token, json=body)
    trial = _request("GET", url, f"/trials/{trial_id}", token)
    given = (
        f"score {rating['score']}"
        if rating["score"] is not None
        else f"better than trial {rating['better_than']}"
    )
    mean = trial["rating_mean"]
    _say(
        f"trial {trial_id}: {given} by {rating['rater']}; now "
        + (f"{mean:.2f} from {trial['rating_count']} score(s)" if mean is not None else "no score")
        + f", {trial['wins']} win(s), {trial['losses']} loss(es)"
    )


@app.command()
def cancel(study_id: int, url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """Cancel a queued study at once, or ask a running study's worker to stop it."""
    study = _request("POST", url, f"/studies/{study_id}/cancel", token)
    if study["state"] == "cancelled":
        outcome = "cancelled" + (f" ({study['state_reason']})" if study["state_reason"] else "")
    else:
        outcome = f"{study['state']}, cancel requested: its worker stops its trials shortly"
    _say(f"study {study['id']} ({study['name']}) {outcome}")


@app.command()
def sample(
    trial_id: int,
    n: Annotated[int, typer.Option("-n", min=1, max=10_000_000, help="Number of samples.")] = 1000,
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Output: .npy (arrays) or .png (a grid of images, image trainers only)."
        ),
    ] = Path("samples.npy"),
    kind: Annotated[str, typer.Option(help="Checkpoint to load: best or last.")] = "best",
    seed: Annotated[int, typer.Option(help="Seed of the latent draws.")] = 0,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Load a trial's checkpoint through the trainer registry and write N samples."""
    import numpy as np
    import torch

    from gentune.trainers.base import UnsafeCheckpoint, load_checkpoint
    from gentune.trainers.grids import grid_png
    from gentune.trainers.registry import get_trainer

    trial = _request("GET", url, f"/trials/{trial_id}")
    study = _request("GET", url, f"/studies/{trial['study_id']}")
    trainer = get_trainer(study["trainer"])
    if trainer is None:
        _fail(f"trainer '{study['trainer']}' is not installed here; install its package first")
    blob = _download(f"{url.rstrip('/')}/api/v1/trials/{trial_id}/checkpoint?kind={kind}")
    try:
        checkpoint = load_checkpoint(blob, "cpu", trainer.checkpoint_globals)
    except UnsafeCheckpoint as exc:
        _fail(f"trial {trial_id}'s {kind} checkpoint was not loaded: {exc}")
    samples = trainer.sample(checkpoint, n, torch.device("cpu"), seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".png":
        if samples.ndim != 4:
            _fail(
                f"trainer {trainer.name} draws {samples.shape[1:]} arrays, not images; "
                "write them to a .npy file"
            )
        out.write_bytes(grid_png(samples, scale=4))
    else:
        np.save(out, samples)
    console.print(
        f"wrote {samples.shape[0]} samples of shape {samples.shape[1:]} from trial "
        f"{trial_id} ({kind} checkpoint, step {checkpoint.get('step')}) to {out}"
    )


@app.command()
def fid(
    dir_a: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Image folder.")],
    dir_b: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Image folder.")],
    features: Annotated[
        str,
        typer.Option(
            help="inception, random, or domain:DATASET (a labelled dataset: digits, mnist, "
            "fashion_mnist, kmnist, cifar10; the last four from GENTUNE_DATA_DIR)."
        ),
    ] = "inception",
    size: Annotated[
        int, typer.Option(help="Side images are resized to first (random, inception).")
    ] = 64,
) -> None:
    """FID (and KID, precision, recall, density, coverage) between two image folders."""
    from gentune.trainers.data import LABELLED_DATASETS, image_folder, load_image_dataset
    from gentune.trainers.metrics.features import (
        DomainClassifier,
        FeatureExtractor,
        InceptionFeatures,
        RandomFeatures,
    )
    from gentune.trainers.metrics.image import ReferenceStats, kid, prdc
    from gentune.trainers.metrics.image import fid as fid_of

    export_data_root(get_settings())
    extractor: FeatureExtractor
    channels = 3
    try:
        if features.startswith("domain:"):
            dataset = features.removeprefix("domain:")
            if dataset not in LABELLED_DATASETS:
                known = ", ".join(sorted(LABELLED_DATASETS))
                _fail(f"no domain classifier for {dataset!r}: it needs labels; known: {known}")
            data = load_image_dataset(dataset, 16 if dataset == "digits" else 32)
            extractor = DomainClassifier.for_dataset(data)
            channels, size = data.channels, data.size
        elif features == "random":
            extractor = RandomFeatures(3)
        elif features == "inception":
            extractor = InceptionFeatures()
        else:
            _fail(f"unknown features {features!r}: use inception, random or domain:DATASET")
        a = image_folder(dir_a, size, channels, held_out_fraction=0.0).train
        b = image_folder(dir_b, size, channels, held_out_fraction=0.0).train
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    feats_a, feats_b = extractor.features(a), extractor.features(b)
    scores = prdc(feats_a, feats_b)
    table = Table(
        "metric",
        "value",
        title=f"{dir_b} against {dir_a} ({extractor.name} features, {len(a)} and {len(b)} images)",
    )
    for name, value in (
        ("fid", fid_of(ReferenceStats.of(feats_a), feats_b)),
        ("kid", kid(feats_a, feats_b)),
        ("precision", scores.precision),
        ("recall", scores.recall),
        ("density", scores.density),
        ("coverage", scores.coverage),
    ):
        table.add_row(name, f"{value:.6g}")
    console.print(table)


@app.command("try")
def try_trainer(
    trainer_name: Annotated[str, typer.Argument(metavar="TRAINER", help="A registered trainer.")],
    param: Annotated[
        list[str] | None, typer.Option("-p", "--param", help="key=value, repeatable.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Save the last checkpoint here.")] = None,
) -> None:
    """Run one trial in this process, without the service: progress and metrics per step."""
    import torch
    from pydantic import ValidationError
    from rich.progress import Progress

    from gentune.trainers.base import pick_device
    from gentune.trainers.registry import get_trainer, trainer_names

    export_data_root(get_settings())
    trainer = get_trainer(trainer_name)
    if trainer is None:
        _fail(f"no trainer '{trainer_name}'; registered: {', '.join(trainer_names())}")
    raw: dict[str, Any] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"-p takes key=value, got {item!r}")
        raw[key.strip()] = yaml.safe_load(value) if value.strip() else value
    try:
        params = trainer.parse_params(raw)
    except ValidationError as exc:
        lines = "\n".join(f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        _fail(f"invalid params for {trainer_name}:\n{lines}")
    shown = [m for m, s in trainer.metrics.items() if s.direction is not None and not s.timing][:8]
    table = Table("step", *shown, title=f"{trainer_name}: {params.model_dump()}")
    total = getattr(params, "epochs", None)
    saved: dict[str, Any] = {}

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"training {trainer_name}", total=total)

        class ConsoleReporter:
            def report(
                self, step: int, metrics: Any, checkpoint: Any = None, samples: Any = None
            ) -> None:
                row = [f"{metrics[m]:.4g}" if m in metrics else "-" for m in shown]
                table.add_row(str(step), *row)
                progress.console.print(
                    f"step {step}: "
                    + ", ".join(f"{m} {v}" for m, v in zip(shown, row, strict=True))
                )
                progress.update(task, completed=step)
                if checkpoint is not None and out is not None:
                    saved["checkpoint"] = checkpoint()

            def should_stop(self) -> bool:
                return False

            def describe_run(self, info: Mapping[str, str]) -> None:
                progress.console.print(", ".join(f"{k} {v}" for k, v in info.items()))

        device = pick_device()
        console.print(f"device: {device}")
        trainer.train(params, device, ConsoleReporter())
    console.print(table)
    if out is not None and "checkpoint" in saved:
        torch.save(saved["checkpoint"], out)
        console.print(f"last checkpoint saved to {out}")


def _send(
    method: str, url: str, path: str, token: str | None = None, **kwargs: Any
) -> httpx.Response:
    token = token or os.environ.get("GENTUNE_API_TOKEN")  # reads too, where they are protected
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    kwargs.setdefault("timeout", 30)
    return httpx.request(method, f"{url.rstrip('/')}/api/v1{path}", headers=headers, **kwargs)


def _request(
    method: str,
    url: str,
    path: str,
    token: str | None = None,
    *,
    source: Path | None = None,
    **kwargs: Any,
) -> Any:
    """Call the API and return its JSON; on an error print the API's own words and exit 1.
    ``source`` is the file the body came from: its errors are then given as FILE:LINE."""
    try:
        response = _send(method, url, path, token, **kwargs)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the gentune service at {url}: {exc}")
    return _json_or_fail(response, source)


def _json_or_fail(response: httpx.Response, source: Path | None = None) -> Any:
    """The response's JSON; an error response is printed in the API's words (exit 1)."""
    if response.status_code < 400:
        return response.json()
    try:
        body = response.json()
    except json.JSONDecodeError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    if errors:
        lines = "\n".join(_error_line(error, source) for error in errors)
        _fail(f"{response.status_code}: the service refused it:\n{lines}")
    _fail(f"{response.status_code}: {_detail(response)}")


def _error_line(error: Mapping[str, Any], source: Path | None) -> str:
    """One refused field as the API words it; under the file's name and line when known."""
    line = error.get("line")
    if source is not None:
        where = f"{source}:{line}" if line else str(source)
        return f"{where}: {error['field']}: {error['message']}"
    return f"  {error['field']}: {error['message']}" + (f" (line {line})" if line else "")


def _detail(response: httpx.Response) -> str:
    """The API's ``detail`` of an error response, else the start of its text."""
    try:
        body = response.json()
    except json.JSONDecodeError:
        return response.text[:500]
    return str(body["detail"]) if isinstance(body, dict) and "detail" in body else str(body)


def _download(full_url: str) -> bytes:
    token = os.environ.get("GENTUNE_API_TOKEN")  # where reads are protected, files are too
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(full_url, timeout=120, headers=headers)
    except httpx.HTTPError as exc:
        _fail(f"download failed: {exc}")
    if response.status_code >= 400:
        _fail(f"{response.status_code}: {_detail(response)}")
    return response.content


@dataclass
class _StudyWatch:
    """`gentune watch` of one study: polls the API every ``interval`` seconds and quietly rides
    out a service that restarts or is briefly unreachable for up to ``patience`` seconds."""

    url: str
    study_id: int
    top: int
    interval: float
    patience: float

    def live(self) -> Any:
        """Redraw the study's progress and top trials in place until the study ends."""
        with Live(console=console, auto_refresh=False) as live:
            while True:
                study = self._get(f"/studies/{self.study_id}")
                trials, count = self.top_trials(study)
                live.update(_watch_view(study, trials, count), refresh=True)
                if study["state"] in FINISHED_STUDY_STATES:
                    return study
                time.sleep(self.interval)

    def lines(self) -> Any:
        """Print a line each time the study's state, trial counts or best change, and its top
        trials once it has ended: readable in a log, unlike a redrawn view."""
        last_line = None
        while True:
            study = self._get(f"/studies/{self.study_id}")
            if study["state"] in FINISHED_STUDY_STATES:
                break
            line = _study_line(study)
            if line != last_line:
                _say(line)
                last_line = line
            time.sleep(self.interval)
        trials, count = self.top_trials(study)
        _print_table(_trials_table(study, trials, count, one_line_rows=False))
        return study

    def top_trials(self, study: Any) -> tuple[list[Any], int]:
        """The study's ``top`` trials by value, best first, and how many trials it has."""
        order = "desc" if study["objective"]["direction"] == "maximize" else "asc"
        page = self._get(
            f"/studies/{study['id']}/trials",
            params={"sort": "value", "order": order, "limit": self.top},
        )
        return page["data"], page["count"]

    def _get(self, path: str, **kwargs: Any) -> Any:
        """GET from the API, retrying while the service cannot answer; errors the service
        means (a 404, ...) fail at once, in its words."""
        give_up_at = time.monotonic() + self.patience
        while True:
            try:
                response = _send("GET", self.url, path, timeout=POLL_TIMEOUT_S, **kwargs)
                if response.status_code not in TRANSIENT_STATUSES:
                    return _json_or_fail(response)
                problem = f"{response.status_code}: {_detail(response)}"
            except httpx.TransportError as exc:
                problem = str(exc) or type(exc).__name__
            left = give_up_at - time.monotonic()
            if left <= 0:
                _fail(f"lost the gentune service at {self.url} for {self.patience:g} s: {problem}")
            time.sleep(min(self.interval, left))


def _watch_view(study: Any, trials: list[Any], count: int) -> Group:
    done, n_trials = _finished_trials(study), study["n_trials"]
    progress = Table.grid(padding=(0, 1))
    progress.add_row(
        ProgressBar(total=max(n_trials, 1), completed=min(done, n_trials), width=30),
        Text(f"{done}/{n_trials} trials finished"),
        Text(_elapsed(study), style="dim"),
    )
    return Group(
        Text(f"study {study['id']} ({study['name']}) {_state_words(study)}"),
        progress,
        Text(f"{_count_words(study)}; {_best_words(study)}"),
        _trials_table(study, trials, count, one_line_rows=True),
    )


def _trials_table(study: Any, trials: list[Any], count: int, *, one_line_rows: bool) -> Table:
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


def _study_line(study: Any) -> str:
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
        f"{_finished_trials(study)}/{study['n_trials']} trials finished ({counts['completed']} "
        f"completed, {counts['pruned']} pruned, {counts['failed']} failed)"
    )
    return words + (f", {counts['running']} running" if counts["running"] else "")


def _count_words(study: Any) -> str:
    counts = study["trial_counts"]
    return ", ".join(f"{counts[state]} {state}" for state in TRIAL_STATES)


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


def _finished_trials(study: Any) -> int:
    counts = study["trial_counts"]
    return int(counts["completed"] + counts["pruned"] + counts["failed"])


def _elapsed(study: Any) -> str:
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


def _print_table(table: Table) -> None:
    """Print a table; where stdout is not a terminal (a pipe, a CI log) give it all the width
    it needs instead of wrapping its cells at 80 columns."""
    if console.is_terminal:
        console.print(table)
        return
    width = Measurement.get(console, console.options.update_width(10_000), table).maximum
    Console(width=max(width, console.width)).print(table)


def _say(text: str, *, end: str = "\n", to: Console = console) -> None:
    """Print text as it is: no rich markup or highlighting, and no wrapping at 80 columns
    when the output is not a terminal (names, reasons and URLs come from the API)."""
    to.print(text, end=end, markup=False, highlight=False, soft_wrap=True)


def _fail(message: str) -> NoReturn:
    _say(f"error: {message}", to=err_console)
    raise typer.Exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
