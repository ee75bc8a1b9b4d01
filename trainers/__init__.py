"""Trainers for gentune: generative models that report metrics through a Reporter.

Trainers never import ``service``, ``optuna`` or ``ray``: a trainer sees only its
validated params, a device and a reporter, so it runs, tests and benchmarks alone.
"""

DATA_DIR_ENV = "GENTUNE_DATA_DIR"
"""The environment variable holding the absolute data root (set by the service and runner)."""
