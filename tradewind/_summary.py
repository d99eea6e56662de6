"""The end-of-run summary for people: a rich table, or plain ``key: value`` text.

Both forms show the same figures, in the same order, from a `RunSummary`; the table is
what `tradewind run` and `tradewind report` print, the text is for logs and pipes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from decimal import Decimal

    from tradewind.actors._tree import RunSummary

__all__ = ["summary_rows", "summary_table", "summary_text"]


def _money(values: dict[str, Decimal]) -> str:
    if not values:
        return "0"
    return ", ".join(f"{amount} {currency}" for currency, amount in sorted(values.items()))


def _counts(values: dict[str, int]) -> str:
    if not values:
        return "none"
    return ", ".join(f"{key} {n}" for key, n in sorted(values.items()))


def summary_rows(summary: RunSummary) -> list[tuple[str, str]]:
    """The summary as (label, value) pairs, in display order."""
    rows = [
        ("run", summary.run_id),
        ("mode", summary.mode),
        ("outcome", summary.outcome),
        ("source", summary.source),
        ("bars in", str(summary.bars_in)),
        ("bars accepted", str(summary.bars_accepted)),
        ("bars rejected", str(summary.bars_rejected)),
        ("duplicates", str(summary.duplicates)),
        ("conflated", str(summary.conflated)),
        ("orders", str(summary.orders)),
        ("fills", str(summary.fills)),
        ("denials", _counts(summary.denials)),
        ("restarts", _counts(summary.restarts)),
        ("dead letters", str(summary.dead_letters)),
        ("records not kept", str(summary.not_kept)),
        ("trading state", summary.trading_state),
        ("realized PnL", _money(summary.realized_pnl)),
        ("unrealized PnL", _money(summary.unrealized_pnl)),
        ("fees", _money(summary.fees)),
    ]
    for line in summary.positions:
        average = "-" if line.average_price is None else str(line.average_price)
        unrealized = "unmarked" if line.unrealized_pnl is None else str(line.unrealized_pnl)
        rows.append(
            (
                f"position {line.instrument}",
                (
                    f"{line.quantity} @ {average} (realized {line.realized_pnl}, "
                    f"unrealized {unrealized} {line.currency})"
                ),
            )
        )
    rows += [
        ("events", str(summary.events)),
        ("event log digest", summary.event_log_digest),
        ("wall time", f"{summary.wall_time:.2f} s"),
    ]
    rows += [("rejected", text) for text in summary.rejections]
    return rows


def summary_table(summary: RunSummary) -> Table:
    """The summary as a two-column rich table."""
    table = Table(title=f"tradewind run {summary.run_id}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for label, value in summary_rows(summary):
        table.add_row(label, value)
    return table


def summary_text(summary: RunSummary) -> str:
    """The summary as plain ``label: value`` lines."""
    return "\n".join(f"{label}: {value}" for label, value in summary_rows(summary))
