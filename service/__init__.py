"""The gentune service: REST API, database, and the worker that runs studies on Ray Tune."""
