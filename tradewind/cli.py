"""The `tradewind` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

import tradewind


@click.group()
@click.version_option(tradewind.__version__, prog_name="tradewind")
def main() -> None:
    """tradewind: a supervised actor runtime for automated trading."""


# --- db: the store's schema ---


@main.group()
def db() -> None:
    """The store's database: schema migrations."""


@db.command()
@click.option(
    "--url",
    required=True,
    metavar="URL",
    help="The store: postgresql://user:pass@host:port/db, sqlite:///path.db.",
)
def migrate(url: str) -> None:
    """Apply every missing schema migration to the store at URL.

    Safe to run while other processes start: on PostgreSQL the migrations run under an
    advisory lock, so each is applied exactly once. Exits 2 on a malformed URL and 1
    when the database cannot be reached; messages never show the password.
    """
    import trio  # noqa: PLC0415 -- keep `tradewind --help` fast

    from tradewind.storage import (  # noqa: PLC0415 -- same
        InvalidStoreUrl,
        StoreError,
        mask_url,
        migrate_store,
    )

    try:
        applied = trio.run(migrate_store, url)
    except InvalidStoreUrl as exc:
        raise click.UsageError(str(exc)) from exc
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    if applied:
        click.echo(f"{mask_url(url)}: applied {', '.join(applied)}")
    else:
        click.echo(f"{mask_url(url)}: schema is up to date")


# --- run, check-config, report: the trading system ---


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress bar (default: for replays, when stderr is a terminal).",
)
@click.option(
    "--log-format",
    type=click.Choice(["json", "console", "auto"]),
    default=None,
    help="Log format (overrides logging.format).",
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Append logs to this file instead of stderr (overrides logging.file).",
)
def run(config: str, progress: bool | None, log_format: str | None, log_file: str | None) -> None:
    """Run the trading system configured in CONFIG until its data ends (replay) or it is
    stopped (SIGINT/SIGTERM), then print the run's summary.

    Exit codes: 0 done, 1 error, 2 configuration problems, 3 supervision gave up,
    4 another run holds the store, 130 interrupted by a second signal.
    """
    from tradewind._main import run_config  # noqa: PLC0415 -- keep `tradewind --help` fast

    code = run_config(
        config,
        progress=progress,
        log_format=log_format,  # type: ignore[arg-type]  # click.Choice guarantees it
        log_file=log_file,
    )
    sys.exit(code)


@main.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False))
def check_config(file: str) -> None:
    """Validate FILE and print the effective configuration (secrets masked).

    With problems, prints every one of them and exits 2.
    """
    import json  # noqa: PLC0415 -- keep `tradewind --help` fast

    from tradewind.actors._settings import load_settings, settings_document  # noqa: PLC0415
    from tradewind.runtime import ConfigError  # noqa: PLC0415

    try:
        settings = load_settings(file)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    click.echo(json.dumps(settings_document(settings), indent=2))


@main.command()
@click.argument("run_id")
@click.option(
    "--store",
    "url",
    envvar="TRADEWIND_STORE__URL",
    default="sqlite:///tradewind.db",
    show_default=True,
    metavar="URL",
    help="The store the run was recorded in (env TRADEWIND_STORE__URL).",
)
def report(run_id: str, url: str) -> None:
    """Print the summary of the stored run RUN_ID."""
    import trio  # noqa: PLC0415 -- keep `tradewind --help` fast
    from rich.console import Console  # noqa: PLC0415

    from tradewind._summary import summary_table  # noqa: PLC0415
    from tradewind.actors._tree import RunSummary  # noqa: PLC0415
    from tradewind.storage import (  # noqa: PLC0415
        InvalidStoreUrl,
        StoreError,
        open_store,
        parse_store_url,
    )

    try:
        parsed = parse_store_url(url)
    except InvalidStoreUrl as exc:
        raise click.UsageError(str(exc)) from exc
    if parsed.backend == "sqlite" and not parsed.is_memory and not Path(parsed.path).is_file():
        # Reading must not leave a new, empty database behind a mistyped path.
        raise click.ClickException(f"no store at {parsed.path}: no such file")

    async def read() -> tuple[object, str | None]:
        async with open_store(url) as store:
            return await store.run(run_id), await store.run_summary(run_id)

    try:
        record, text = trio.run(read)
    except InvalidStoreUrl as exc:
        raise click.UsageError(str(exc)) from exc
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    if record is None:
        raise click.ClickException(f"no run {run_id!r} in the store")
    if text is None:
        click.echo(f"run {run_id}: {record}")
        click.echo("no summary was stored (the run did not finish)")
        return
    Console().print(summary_table(RunSummary.from_json(text)))


# --- demo: the runtime on its own ---


@main.command()
@click.option("--messages", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, help="Seed of the restart backoff jitter.")
def demo(messages: int, seed: int) -> None:
    """Run a 3-actor pipeline (source -> doubler -> sink), crash the doubler once, and
    print each actor's statistics: nothing is lost across the restart."""
    from functools import partial  # noqa: PLC0415

    import trio  # noqa: PLC0415 -- keep `tradewind --help` fast
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    from tradewind.runtime._demo import run_demo  # noqa: PLC0415

    result = trio.run(partial(run_demo, messages, seed=seed))
    table = Table(title="tradewind demo: actor statistics")
    for column in ("actor", "processed", "restarts", "crashes", "redelivered", "dead letters"):
        table.add_column(column, justify="left" if column == "actor" else "right")
    for path, stats in result.statistics.actors.items():
        table.add_row(
            path,
            str(stats.processed),
            str(stats.restarts),
            str(stats.crashes),
            str(stats.redelivered),
            str(stats.dead_letters),
        )
    Console().print(table)
    expected = messages * (messages + 1)
    click.echo(f"sink total: {result.total} (expected {expected})")
