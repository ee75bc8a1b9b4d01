"""Study definitions the tests submit."""

from __future__ import annotations

from typing import Any


def ring_spec(**overrides: object) -> dict[str, object]:
    """A small valid study definition for API tests."""
    spec: dict[str, object] = {
        "name": "ring-test",
        "trainer": "gan2d",
        "params": {"dataset": "ring8", "epochs": 3, "iters_per_epoch": 20},
        "search_space": {
            "lr_g": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "loss": {"type": "categorical", "choices": ["bce", "hinge", "wgan-gp"]},
            "batch_size": {"type": "int", "low": 64, "high": 512, "step": 64},
        },
        "objective": {"metric": "mode_score", "direction": "maximize"},
        "sampler": {"type": "tpe", "seed": 0},
        "pruner": {"type": "median", "n_warmup_steps": 1},
        "budget": {"n_trials": 4, "max_concurrent": 2},
    }
    spec.update(overrides)
    return spec


UNSTABLE_RING_STUDY: dict[str, Any] = {
    "name": "ring-unstable",
    "trainer": "gan2d",
    "params": {"dataset": "ring8", "epochs": 6, "iters_per_epoch": 100},
    "search_space": {
        "lr_g": {"type": "categorical", "choices": [0.001, 0.3]},
        "lr_d": {"type": "categorical", "choices": [0.002, 0.3]},
    },
    "objective": {"metric": "mode_score", "direction": "maximize"},
    "sampler": {"type": "grid", "seed": 0},
    "pruner": {"type": "none"},
    "budget": {"n_trials": 4, "max_concurrent": 2},
}
"""A grid over learning rates of which 0.3 blows the ring GAN up in its first epoch: one
healthy trial, and trials the stability rules stop."""


def quadratic_spec(name: str, n_trials: int, max_concurrent: int, **extra: Any) -> dict[str, Any]:
    """A study of the test plugin's quadratic trainer over its learning rate: trials of a few
    evaluations that take next to no time."""
    return {
        "name": name,
        "trainer": "quadratic",
        "params": {"epochs": 4},
        "search_space": {"lr": {"type": "float", "low": 0.01, "high": 0.5}},
        "objective": {"metric": "loss", "direction": "minimize"},
        "sampler": {"type": "random", "seed": 3},
        "pruner": {"type": "none"},
        "budget": {"n_trials": n_trials, "max_concurrent": max_concurrent},
        **extra,
    }


BAD_DEFINITION = """\
name: bad-study
trainer: gan2d
params:
  dataset: ring8
search_space:
  lr_g:
    type: float
    low: 0.1
    high: 0.01
objective:
  metric: mode_score
  direction: maximize
budget:
  n_trials: 0
"""
