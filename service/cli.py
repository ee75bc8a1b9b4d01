"""The ``gentune`` command: run the service or a worker, migrate, and talk to a running service."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
import yaml
from rich.console import Console

from service.config import export_data_root, get_settings
from service.db.session import redacted

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
    typer.Option("--token", envvar="GENTUNE_API_TOKEN", help="API token for mutating requests."),
]
DEFAULT_URL = "http://127.0.0.1:8000"


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

    from service.app import create_app
    from service.db.session import migrate
    from service.scheduling.worker import _die_with_parent

    _logging()
    settings = get_settings()
    migrate(settings.database_url)
    worker_process = None
    if worker:
        worker_process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker"], preexec_fn=_die_with_parent
        )
    console.print(
        f"gentune: API on http://{host}:{port} (docs at /docs), database "
        f"{redacted(settings.database_url)}, artifacts in {settings.artifact_dir}"
    )
    try:
        uvicorn.run(
            create_app(settings, run_migrations=False), host=host, port=port, log_level="info"
        )
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
    from service.scheduling.worker import Worker

    _logging()
    the_worker = Worker(get_settings())

    def stop(_signum: int, _frame: Any) -> None:
        the_worker.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    the_worker.run()


@app.command()
def migrate() -> None:
    """Create or upgrade gentune's tables in GENTUNE_DATABASE_URL."""
    from service.db.session import migrate as run_migrations

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
    """Submit a study definition; print the study's id and URL."""
    try:
        definition = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        _fail(f"{file} is not valid YAML: {exc}")
    study = _request("POST", url, "/studies", token, json=definition)
    console.print(f"study {study['id']} ({study['name']}) queued: {study['url']}")


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
    if counts["pruned"] == 0:
        return
    pruned = _request(
        "GET", url, f"/studies/{study_id}/trials", params={"state": "pruned", "limit": 1000}
    )["data"]
    by = Counter(trial["pruned_by"] or "unrecorded" for trial in pruned)
    console.print(
        "pruned by: " + ", ".join(f"{name} {n}" for name, n in sorted(by.items())),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    for trial in pruned if why else []:
        console.print(
            f"  trial {trial['id']}: {trial['reason']}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def best(
    study_id: int,
    url: UrlOption = DEFAULT_URL,
    download: Annotated[
        Path | None, typer.Option(help="Also save config and checkpoint here.")
    ] = None,
) -> None:
    """Print the best config of a study as YAML; optionally download its checkpoint."""
    result = _request("GET", url, f"/studies/{study_id}/best")
    text = yaml.safe_dump(
        {
            "trial_id": result["trial_id"],
            "value": result["value"],
            "step": result["step"],
            "config": result["config"],
        },
        sort_keys=False,
    )
    console.print(text, end="", markup=False, highlight=False)
    if download is not None:
        download.mkdir(parents=True, exist_ok=True)
        (download / "config.yaml").write_text(yaml.safe_dump(result["config"], sort_keys=False))
        if result["checkpoint_url"]:
            target = download / "checkpoint.pt"
            target.write_bytes(_download(result["checkpoint_url"]))
            console.print(f"saved {download / 'config.yaml'} and {target}")


@app.command()
def cancel(study_id: int, url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """Cancel a queued or running study."""
    study = _request("POST", url, f"/studies/{study_id}/cancel", token)
    console.print(
        f"study {study['id']}: {study['state']}"
        + (" (cancel requested)" if study["cancel_requested"] else "")
    )


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

    from trainers.grids import grid_png
    from trainers.registry import get_trainer

    trial = _request("GET", url, f"/trials/{trial_id}")
    study = _request("GET", url, f"/studies/{trial['study_id']}")
    trainer = get_trainer(study["trainer"])
    if trainer is None:
        _fail(f"trainer '{study['trainer']}' is not installed here; install its package first")
    blob = _download(f"{url.rstrip('/')}/api/v1/trials/{trial_id}/checkpoint?kind={kind}")
    checkpoint = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=False)
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
    from rich.table import Table

    from trainers.data import LABELLED_DATASETS, image_folder, load_image_dataset
    from trainers.metrics.features import (
        DomainClassifier,
        FeatureExtractor,
        InceptionFeatures,
        RandomFeatures,
    )
    from trainers.metrics.image import ReferenceStats, kid, prdc
    from trainers.metrics.image import fid as fid_of

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
    from rich.table import Table

    from trainers.base import pick_device
    from trainers.registry import get_trainer, trainer_names

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


def _request(method: str, url: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(
            method, f"{url.rstrip('/')}/api/v1{path}", headers=headers, timeout=30, **kwargs
        )
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the gentune service at {url}: {exc}")
    if response.status_code >= 400:
        try:
            body = response.json()
        except json.JSONDecodeError:
            _fail(f"{response.status_code}: {response.text[:500]}")
        errors = body.get("errors") or []
        if errors:
            lines = "\n".join(f"  {e['field']}: {e['message']}" for e in errors)
            _fail(f"{response.status_code}: the service refused it:\n{lines}")
        _fail(f"{response.status_code}: {body.get('detail', response.text[:500])}")
    return response.json()


def _download(full_url: str) -> bytes:
    try:
        response = httpx.get(full_url, timeout=120)
    except httpx.HTTPError as exc:
        _fail(f"download failed: {exc}")
    if response.status_code >= 400:
        _fail(f"{response.status_code}: {response.text[:500]}")
    return response.content


def _fail(message: str) -> NoReturn:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
