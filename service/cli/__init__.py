"""The ``gentune`` command: start the service or a worker (``server``), talk to a running
service through one API client (``remote``), and run models here (``local``)."""

from __future__ import annotations

import typer

from gentune.service.cli import local, remote, server

app = typer.Typer(
    help="gentune: hyperparameter optimization for generative models.",
    no_args_is_help=True,
    add_completion=False,
)
for command in (
    server.serve,
    server.worker,
    server.migrate,
    remote.submit,
    remote.studies,
    remote.status,
    remote.watch,
    remote.best,
    remote.refine,
    remote.export,
    local.reproduce,
    remote.rate,
    remote.cancel,
    local.sample,
    local.fid,
):
    app.command()(command)
app.command("try")(local.try_trainer)

__all__ = ["app"]
