"""The ``imgproc`` command line."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from imgproc_cli.commands import images, jobs, presets, stats, transform, users, webhooks
from imgproc_cli.errors import EXIT_USAGE
from imgproc_cli.runtime import load_settings
from imgproc_core.ports import DatabaseSchema
from imgproc_core.settings import Settings, SettingsError

app = typer.Typer(help="imgproc: a self-hosted image service.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")

#: Exit status for settings that are missing, malformed or unsafe.
EXIT_BAD_SETTINGS = EXIT_USAGE


@app.callback()
def root() -> None:
    """Operate an imgproc service and run its transformation engine on local files."""


def _settings(**overrides: Any) -> Settings:
    return load_settings(**overrides)


def _schema(settings: Settings) -> DatabaseSchema:
    from imgproc_core.container import build_container

    return build_container(settings).database_schema()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [IMGPROC_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [IMGPROC_PORT]")] = None,
) -> None:
    """Serve the HTTP API (with its worker threads in the embedded profile).

    The database schema is brought up to date first.
    """
    from imgproc_http.server import serve as serve_http

    settings = _settings(host=host, port=port)
    try:
        settings.check_secrets()
        schema = _schema(settings)
        if schema.expected() is not None:
            typer.echo(f"imgproc: database schema at {schema.upgrade()}", err=True)
        serve_http(settings)
    except SettingsError as exc:
        typer.echo(f"imgproc: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None


@app.command()
def worker(
    processes: Annotated[
        int | None,
        typer.Option(
            help="Processes rendering jobs, one job thread each [IMGPROC_WORKER_PROCESSES]"
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Port of the Prometheus metrics, 0 for none [IMGPROC_WORKER_METRICS_PORT]"
        ),
    ] = None,
) -> None:
    """Render transform jobs from the Kafka topic, in the consumer group (production profile).

    Stops on SIGTERM or SIGINT after finishing and committing the jobs in hand.
    """
    from imgproc_worker import serve as serve_worker

    settings = _settings(worker_processes=processes, worker_metrics_port=metrics_port)
    try:
        serve_worker(settings, "worker")
    except SettingsError as exc:
        typer.echo(f"imgproc: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None


@app.command()
def relay(
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Port of the Prometheus metrics, 0 for none [IMGPROC_RELAY_METRICS_PORT]"
        ),
    ] = None,
) -> None:
    """Publish queued jobs from the outbox table to the Kafka topic (production profile).

    Several relays may run at once. Stops on SIGTERM or SIGINT after the batch in hand.
    """
    from imgproc_worker import serve as serve_relay

    settings = _settings(relay_metrics_port=metrics_port)
    try:
        serve_relay(settings, "relay")
    except SettingsError as exc:
        typer.echo(f"imgproc: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema up to date."""
    schema = _schema(_settings())
    if schema.expected() is None:
        typer.echo("nothing to migrate: the database is in memory")
        return
    typer.echo(f"database schema at {schema.upgrade()}")


@db_app.command("current")
def db_current() -> None:
    """Print the revision the database schema is at ("none" before the first upgrade)."""
    schema = _schema(_settings())
    if schema.expected() is None:
        typer.echo("none: the database is in memory")
        return
    typer.echo(schema.current() or "none")


app.add_typer(users.app)
app.add_typer(images.app)
app.add_typer(jobs.app)
app.add_typer(presets.app)
app.add_typer(webhooks.app)
app.command(epilog=stats.EPILOG)(stats.stats)
app.command(epilog=transform.EPILOG)(transform.transform)


def main() -> None:
    app()
