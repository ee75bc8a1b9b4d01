"""What a trial's Ray worker needs to know besides its params, written by the searcher and
read by the trial: one frozen record, carried in Tune's config as a plain dict."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class TrialSettings:
    study_id: int
    trial_id: int
    trainer: str
    fixed: dict[str, Any]
    """The study's fixed params; the trial's sampled ones travel beside them as ``params``."""
    objective: str
    direction: str
    artifact_dir: str
    """Absolute: Tune runs a trial in a folder of its own."""
    data_dir: str
    keep_best: int
    keep_last: bool

    KEY: ClassVar[str] = "gentune"

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def config(self, params: dict[str, Any]) -> dict[str, Any]:
        """The Tune config of a trial with these settings and ``params``."""
        return {"params": params, self.KEY: asdict(self)}

    @classmethod
    def of(cls, config: dict[str, Any]) -> TrialSettings:
        return cls(**config[cls.KEY])
