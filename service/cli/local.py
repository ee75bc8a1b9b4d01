"""The commands that run models in this process: ``try`` a trainer without the service,
``fid`` between two image folders, and, from a service's records, ``sample`` a trial's
checkpoint and ``reproduce`` a finished trial."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.progress import Progress, TaskID
from rich.table import Table

from gentune.service.cli.connection import (
    DEFAULT_URL,
    TokenOption,
    UrlOption,
    downloaded,
    reports_api_errors,
)
from gentune.service.cli.render import console, err_console, fail, print_table, say
from gentune.service.client import Client
from gentune.service.config import export_data_root, get_settings

if TYPE_CHECKING:
    import numpy as np
    import torch

    from gentune.service.studies.reproduce import MetricCheck
    from gentune.trainers.base import Checkpoint, Trainer, TrainerParams
    from gentune.trainers.metrics.features import FeatureExtractor

Recorded = dict[str, dict[int, float | None]]
"""Every metric of a run by step, as ``reproduce`` gets it from running a trial again."""


def try_trainer(
    trainer_name: Annotated[str, typer.Argument(metavar="TRAINER", help="A registered trainer.")],
    param: Annotated[
        list[str] | None, typer.Option("-p", "--param", help="key=value, repeatable.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Save the last checkpoint here.")] = None,
) -> None:
    """Run one trial in this process, without the service: progress and metrics per step."""
    import torch

    from gentune.trainers.base import pick_device

    export_data_root(get_settings())
    trainer = _registered_trainer(trainer_name)
    params = _parsed_params(trainer, trainer_name, param or [])
    shown = [m for m, s in trainer.metrics.items() if s.direction is not None and not s.timing][:8]
    table = Table("step", *shown, title=f"{trainer_name}: {params.model_dump()}")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"training {trainer_name}", total=getattr(params, "epochs", None))
        reporter = _ConsoleReporter(progress, task, table, shown, keep_checkpoint=out is not None)
        device = pick_device()
        console.print(f"device: {device}")
        trainer.train(params, device, reporter)
    console.print(table)
    if out is not None and reporter.checkpoint is not None:
        torch.save(reporter.checkpoint, out)
        console.print(f"last checkpoint saved to {out}")


def _registered_trainer(name: str) -> Trainer:
    from gentune.trainers.registry import get_trainer, trainer_names

    trainer = get_trainer(name)
    if trainer is None:
        fail(f"no trainer '{name}'; registered: {', '.join(trainer_names())}")
    return trainer


def _parsed_params(trainer: Trainer, trainer_name: str, items: list[str]) -> TrainerParams:
    """``-p key=value`` options (values read as YAML) as the trainer's params, or exit 1
    naming each bad one."""
    from pydantic import ValidationError

    raw: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"-p takes key=value, got {item!r}")
        raw[key.strip()] = yaml.safe_load(value) if value.strip() else value
    try:
        return trainer.parse_params(raw)
    except ValidationError as exc:
        lines = "\n".join(f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        fail(f"invalid params for {trainer_name}:\n{lines}")


@dataclass
class _ConsoleReporter:
    """`gentune try`'s reporter: a line and a table row per evaluation, the progress bar
    moved on, and the last checkpoint kept when it is to be saved."""

    progress: Progress
    task: TaskID
    table: Table
    shown: list[str]
    keep_checkpoint: bool
    checkpoint: Checkpoint | None = None

    def report(
        self,
        step: int,
        metrics: Mapping[str, float],
        checkpoint: Callable[[], Checkpoint] | None = None,
        samples: Callable[[], np.ndarray] | None = None,
    ) -> None:
        row = [f"{metrics[m]:.4g}" if m in metrics else "-" for m in self.shown]
        self.table.add_row(str(step), *row)
        self.progress.console.print(
            f"step {step}: " + ", ".join(f"{m} {v}" for m, v in zip(self.shown, row, strict=True))
        )
        self.progress.update(self.task, completed=step)
        if checkpoint is not None and self.keep_checkpoint:
            self.checkpoint = checkpoint()

    def should_stop(self) -> bool:
        return False

    def describe_run(self, info: Mapping[str, str]) -> None:
        self.progress.console.print(", ".join(f"{k} {v}" for k, v in info.items()))


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
    from gentune.trainers.data import image_folder

    export_data_root(get_settings())
    try:
        extractor, channels, size = _feature_extractor(features, size)
        a = image_folder(dir_a, size, channels, held_out_fraction=0.0).train
        b = image_folder(dir_b, size, channels, held_out_fraction=0.0).train
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    title = f"{dir_b} against {dir_a} ({extractor.name} features, {len(a)} and {len(b)} images)"
    console.print(_distances_table(extractor, a, b, title))


def _feature_extractor(features: str, size: int) -> tuple[FeatureExtractor, int, int]:
    """The network ``--features`` names, with the channels and the side it reads images at
    (a domain classifier reads its dataset's own)."""
    from gentune.trainers.data import LABELLED_DATASETS, load_image_dataset
    from gentune.trainers.metrics.features import (
        DomainClassifier,
        InceptionFeatures,
        RandomFeatures,
    )

    if features.startswith("domain:"):
        dataset = features.removeprefix("domain:")
        if dataset not in LABELLED_DATASETS:
            known = ", ".join(sorted(LABELLED_DATASETS))
            fail(f"no domain classifier for {dataset!r}: it needs labels; known: {known}")
        data = load_image_dataset(dataset, 16 if dataset == "digits" else 32)
        return DomainClassifier.for_dataset(data), data.channels, data.size
    if features == "random":
        return RandomFeatures(3), 3, size
    if features == "inception":
        return InceptionFeatures(), 3, size
    fail(f"unknown features {features!r}: use inception, random or domain:DATASET")


def _distances_table(
    extractor: FeatureExtractor, a: torch.Tensor, b: torch.Tensor, title: str
) -> Table:
    """FID, KID, precision, recall, density and coverage of images ``b`` against ``a``."""
    from gentune.trainers.metrics.image import ReferenceStats, kid, prdc
    from gentune.trainers.metrics.image import fid as fid_of

    feats_a, feats_b = extractor.features(a), extractor.features(b)
    scores = prdc(feats_a, feats_b)
    table = Table("metric", "value", title=title)
    for name, value in (
        ("fid", fid_of(ReferenceStats.of(feats_a), feats_b)),
        ("kid", kid(feats_a, feats_b)),
        ("precision", scores.precision),
        ("recall", scores.recall),
        ("density", scores.density),
        ("coverage", scores.coverage),
    ):
        table.add_row(name, f"{value:.6g}")
    return table


@reports_api_errors
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
    import torch

    from gentune.trainers.base import UnsafeCheckpoint, load_checkpoint

    client = Client(url)
    trainer = _trainer_of_trial(client, trial_id)
    blob = downloaded(client, f"/trials/{trial_id}/checkpoint", kind=kind)
    try:
        checkpoint = load_checkpoint(blob, "cpu", trainer.checkpoint_globals)
    except UnsafeCheckpoint as exc:
        fail(f"trial {trial_id}'s {kind} checkpoint was not loaded: {exc}")
    samples = trainer.sample(checkpoint, n, torch.device("cpu"), seed=seed)
    _write_samples(samples, out, trainer.name)
    console.print(
        f"wrote {samples.shape[0]} samples of shape {samples.shape[1:]} from trial "
        f"{trial_id} ({kind} checkpoint, step {checkpoint.get('step')}) to {out}"
    )


def _trainer_of_trial(client: Client, trial_id: int) -> Trainer:
    """The trainer that ran the trial, as installed here."""
    from gentune.trainers.registry import get_trainer

    trial = client.get(f"/trials/{trial_id}")
    study = client.get(f"/studies/{trial['study_id']}")
    trainer = get_trainer(study["trainer"])
    if trainer is None:
        fail(f"trainer '{study['trainer']}' is not installed here; install its package first")
    return trainer


def _write_samples(samples: np.ndarray, out: Path, trainer_name: str) -> None:
    """Samples as a .npy array, or as a .png grid where they are images."""
    import numpy as np

    from gentune.trainers.grids import grid_png

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() != ".png":
        np.save(out, samples)
        return
    if samples.ndim != 4:
        fail(
            f"trainer {trainer_name} draws {samples.shape[1:]} arrays, not images; "
            "write them to a .npy file"
        )
    out.write_bytes(grid_png(samples, scale=4))


@reports_api_errors
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
    export_data_root(get_settings())
    client = Client(url, token)
    manifest = client.get(f"/trials/{trial_id}/manifest")
    if manifest["state"] in ("pending", "running"):
        fail(f"trial {trial_id} is still {manifest['state']}; reproduce it once it has ended")
    with tempfile.TemporaryDirectory(prefix="gentune-reproduce-") as workdir:
        _fetch_start_checkpoint(client, manifest, Path(workdir))
        again, said = _run_again(manifest)
    print_table(_facts_table(manifest, said))
    checks, timings = _compared(manifest, again, tolerance)
    print_table(_checks_table(checks))
    if timings:
        say(f"not compared (timings, different on every run): {', '.join(timings)}")
    differ = [c.name for c in checks if not c.ok]
    if differ:
        fail(f"trial {trial_id} did not reproduce within {tolerance:g}: {', '.join(differ)}")
    say(
        f"trial {trial_id} reproduced: {len(checks)} metrics at every recorded step within "
        f"{tolerance:g} (largest difference {max((c.max_diff for c in checks), default=0):.3g})"
    )


def _fetch_start_checkpoint(client: Client, manifest: dict[str, Any], workdir: Path) -> None:
    """A fine-tuned trial starts from its source's checkpoint: fetch it into ``workdir`` and
    point the manifest's config at the file."""
    init = manifest["config"].get("init_from")
    if not init:
        return
    start = workdir / "init.pt"
    start.write_bytes(client.download(f"/trials/{init['trial']}/checkpoint", kind=init["kind"]))
    manifest["config"]["init_from"] = {**init, "checkpoint": str(start)}


def _run_again(manifest: Mapping[str, Any]) -> tuple[Recorded, dict[str, str]]:
    """Train the manifest's config again on CPU, a line on stderr per step; the metrics by
    step and what the trainer said of its run."""
    import torch

    from gentune.service.studies.reproduce import ReproduceError, run_again

    last = max((p["step"] for ps in manifest["metrics"].values() for p in ps), default=0)
    say(
        f"trial {manifest['trial_id']} ({manifest['trainer']}, {manifest['state']}, seed "
        f"{manifest['seed']}): training again on CPU up to step {last}"
    )
    try:
        return run_again(
            manifest,
            torch.device("cpu"),
            on_step=lambda step: say(f"  step {step}/{last}", to=err_console),
        )
    except ReproduceError as exc:
        fail(str(exc))


def _facts_table(manifest: Mapping[str, Any], said: Mapping[str, str]) -> Table:
    """The recorded run's facts beside this machine's; a difference in yellow."""
    import torch

    from gentune.service.scheduling.trial_entry import device_info
    from gentune.service.studies.reproduce import COMPARED_FACTS

    here = {**device_info(torch.device("cpu")), **said}
    facts = Table("fact", "recorded", "here", title="run")
    for key in COMPARED_FACTS:
        recorded, now = manifest["run_info"].get(key, "–"), here.get(key, "–")
        facts.add_row(key, recorded, now if now == recorded else f"[yellow]{now}[/yellow]")
    return facts


def _compared(
    manifest: Mapping[str, Any], again: Recorded, tolerance: float
) -> tuple[list[MetricCheck], list[str]]:
    """Each recorded metric against the new run's, and the timings left out (they differ
    on every run)."""
    from gentune.service.studies.reproduce import compare
    from gentune.trainers.registry import get_trainer

    trainer = get_trainer(manifest["trainer"])
    timing = {name for name, spec in trainer.metrics.items() if spec.timing} if trainer else set()
    checks = compare(manifest["metrics"], again, tolerance, timing)
    return checks, sorted(set(manifest["metrics"]) & timing)


def _checks_table(checks: list[MetricCheck]) -> Table:
    table = Table("metric", "steps", "largest difference", "at step", "", title="metrics")
    for check in checks:
        verdict = "[green]same[/green]" if check.ok else f"[red]differs[/red] {check.note}"
        table.add_row(
            check.name, str(check.steps), f"{check.max_diff:.3g}", str(check.worst_step), verdict
        )
    return table
