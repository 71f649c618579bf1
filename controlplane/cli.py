"""The ``traceloom`` command.

Exit codes (the same for every subcommand):

    0  success
    1  tests failed (``run --wait``)
    2  the run errored, timed out or was cancelled; or bad usage
    3  the server could not be reached or refused the request
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
from aiohttp import web

from controlplane.logs import configure_logging
from controlplane.settings import settings_from_env
from controlplane.storage.db import Database
from controlplane.storage.keys import ALL_SCOPES, create_key

EXIT_OK, EXIT_TESTS_FAILED, EXIT_RUN_ERRORED, EXIT_UNREACHABLE = 0, 1, 2, 3

_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="TRACELOOM_DATA_DIR",
    default=Path(".traceloom"),
    show_default=True,
    help="Folder for the database, artifacts and caches.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="traceloom")
def main() -> None:
    """TraceLoom: run a Playwright suite across many machines."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to bind.")
@_data_dir
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    default="console",
    show_default=True,
    envvar="TRACELOOM_LOG_FORMAT",
)
def serve(host: str, port: int, data_dir: Path, log_format: str) -> None:
    """Run the control plane (API and run engine)."""
    from controlplane.api.app import make_app

    settings = settings_from_env(
        host=host, port=port, data_dir=data_dir, log_format=log_format
    )
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    web.run_app(
        make_app(settings=settings),
        host=settings.host,
        port=settings.port,
        print=lambda _msg: click.echo(
            f"traceloom: serving on http://{settings.host}:{settings.port}", err=True
        ),
        access_log=None,
    )


@main.group()
def keys() -> None:
    """Manage API keys."""


@keys.command("create")
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(ALL_SCOPES),
    help="Grant only these scopes (repeatable). Default: all scopes.",
)
@_data_dir
def keys_create(name: str, scopes: tuple[str, ...], data_dir: Path) -> None:
    """Create an API key; it is printed once, as the last line."""

    async def create() -> str:
        async with Database.open(data_dir / "traceloom.sqlite3") as db:
            return await create_key(db, name=name, scopes=scopes or ALL_SCOPES)

    secret = asyncio.run(create())
    click.echo(
        f"Created API key {name!r} with scopes {', '.join(scopes or ALL_SCOPES)}."
    )
    click.echo("Store it now: it is not kept and cannot be shown again.")
    click.echo(secret)
