"""The `tradewind` command line."""

from __future__ import annotations

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
