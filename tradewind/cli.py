"""The `tradewind` command line."""

from __future__ import annotations

import click

import tradewind


@click.group()
@click.version_option(tradewind.__version__, prog_name="tradewind")
def main() -> None:
    """tradewind: a supervised actor runtime for automated trading."""
