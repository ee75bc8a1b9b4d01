"""The gentune service: REST API, database, and the worker that runs studies on Ray Tune."""

__version__ = "0.1.0"
