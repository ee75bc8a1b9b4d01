"""Settings, read from ``GENTUNE_*`` environment variables (and a ``.env`` file if present)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from gentune.trainers import DATA_DIR_ENV

DEFAULT_HOME = Path(".gentune")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENTUNE_", env_file=".env", extra="ignore")

    database_url: str = Field(
        f"sqlite:///{DEFAULT_HOME / 'gentune.db'}",
        description="SQLAlchemy URL of gentune's database; Optuna's studies live there too.",
    )
    artifact_dir: str = Field(
        str(DEFAULT_HOME / "artifacts"), description="Where checkpoints are written."
    )
    data_dir: str = Field(
        "data",
        description="Root of datasets kept on disk; trainers' data_dir params name folders in it.",
    )
    ray_address: str | None = Field(
        None, description="Address of an existing Ray cluster; unset starts a local Ray."
    )
    api_token: SecretStr | None = Field(
        None,
        description="A token (named 'default'): when set, changing anything needs "
        "'Authorization: Bearer <token>' or the dashboard's login.",
    )
    api_tokens_file: str | None = Field(
        None,
        description="A YAML file of named tokens ('alice: <token>'), re-read when it changes; "
        "studies record the name that submitted them.",
    )
    protect_reads: bool = Field(
        False,
        description="With tokens set: every read (API, dashboard, /optuna, /metrics) needs a "
        "token too; /health stays open.",
    )
    cookie_secure: bool = Field(
        False,
        description="Mark the login cookie Secure even when the request reached the service "
        "over plain HTTP (behind a proxy that ends TLS).",
    )
    session_max_age_s: int = Field(
        7 * 24 * 3600, ge=60, description="How long a dashboard login lasts."
    )
    public_url: str | None = Field(
        None, description="Base URL used in links the API returns; default: the request's."
    )
    trusted_hosts: str = Field(
        "localhost,127.0.0.1,::1",
        max_length=10_000,
        description="Comma-separated host names the service answers to (the request's Host, "
        "port aside), against DNS rebinding: '*.example.com' takes its subdomains, '*' any "
        "name. GENTUNE_PUBLIC_URL's host is always trusted; /api/v1/health answers any.",
    )
    worker_id: str | None = Field(
        None, description="Name of this worker in the database; default: host name and pid."
    )
    default_timeout_s: float = Field(
        7 * 24 * 3600,
        ge=0,
        le=30 * 24 * 3600,
        description="budget.timeout_s of a study that sets none (written into its stored "
        "definition): no study runs, and fills the disk, for ever. 0: no default.",
    )
    max_claims: int = Field(
        10,
        ge=1,
        le=10_000,
        description="Runs a study may start (its first, and one per resume or takeover) "
        "before it is failed: a study whose runs keep dying does not loop for ever.",
    )
    worker_max_studies: int = Field(2, ge=1, le=64, description="Studies one worker runs at once.")
    worker_poll_s: float = Field(1.0, gt=0, le=60, description="Seconds between queue polls.")
    warm_runners: int = Field(
        1,
        ge=0,
        le=8,
        description="Study processes a worker keeps started and connected to Ray, ready for "
        "the next study it claims (0: start each study's process when it is claimed).",
    )
    heartbeat_s: float = Field(5.0, gt=0, le=600, description="Seconds between study heartbeats.")
    stale_after_s: float = Field(
        120.0, gt=0, description="A running study silent this long is taken over by another worker."
    )
    db_patience_s: float = Field(
        600.0,
        ge=0,
        description="How long a worker and its study runs wait out an unreachable database "
        "(retrying each write) before giving up.",
    )
    max_trials: int = Field(10_000, ge=1, description="Largest n_trials a study may ask for.")
    max_concurrent: int = Field(64, ge=1, description="Largest budget.max_concurrent.")
    page_size_max: int = Field(500, ge=1, description="Largest page size of list endpoints.")
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body; larger ones get 413."
    )
    max_grid_points: int = Field(
        1_000_000, ge=1, description="Most points a grid study's search space may span."
    )
    max_search_space_params: int = Field(
        64, ge=1, description="Most parameters one study may search."
    )
    max_eval_samples: int = Field(
        50_000, ge=1, description="Largest sample count per evaluation (params named *samples)."
    )
    max_string_length: int = Field(
        4096, ge=64, description="Longest string (value or key) in a study definition."
    )
    max_nesting_depth: int = Field(
        32, ge=8, le=200, description="Deepest nesting of a study definition."
    )
    max_definition_values: int = Field(
        100_000, ge=100, description="Most values in a definition, YAML aliases expanded."
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()


def export_data_root(settings: Settings) -> str:
    """Put the absolute data root where the trainers read it (they never import service)."""
    root = str(Path(settings.data_dir).resolve())
    os.environ[DATA_DIR_ENV] = root
    return root
