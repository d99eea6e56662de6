"""`tradewind run` in-process: exit codes, progress, signals and the risk reload."""

from __future__ import annotations

import functools
import io
import json
import os
import signal
import urllib.parse
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
import trio
from rich.console import Console
from tradewind.actors import Bar, decode_record
from tradewind.actors._tree import RunSummary, open_trading_system
from tradewind.runtime import MessageDropped

from tests.runlock import holding
from tests.system.conftest import RISK, MemoryStore, settings_for, synthetic, write_config
from tests.test_summary import summary as summary_of
from tradewind import _main
from tradewind._main import (
    EXIT_CONFIG,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STORE_IN_USE,
    reload_risk,
    run_config,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tradewind.actors._settings import Settings
    from tradewind.storage import Transaction


def run(config: Path, tmp_path: Path, **kwargs: Any) -> tuple[int, str, list[dict[str, Any]]]:
    out = io.StringIO()
    code = run_config(
        config,
        log_file=tmp_path / "run.log",
        log_format="json",
        out=Console(file=out, width=200),
        **kwargs,
    )
    log = [json.loads(line) for line in (tmp_path / "run.log").read_text().splitlines()]
    return code, out.getvalue(), log


class TestExitCodes:
    def test_a_finished_replay_exits_0_and_prints_the_summary(self, tmp_path):
        code, out, log = run(write_config(tmp_path), tmp_path, progress=True)
        assert code == EXIT_OK
        assert "completed" in out
        assert "event log digest" in out
        events = [r["event"] for r in log]
        assert events[0] != "run_finished"
        assert "run_started" in events
        assert "progress" in events
        assert events[-1] == "run_finished"

    def test_a_config_problem_exits_2_before_anything_starts(self, tmp_path, capsys):
        code = run_config(write_config(tmp_path, mode="backtest"))
        assert code == EXIT_CONFIG
        assert "mode (TRADEWIND_MODE)" in capsys.readouterr().err

    def test_a_log_file_that_cannot_be_opened_exits_2_with_the_reason(self, tmp_path, capsys):
        missing = tmp_path / "no-such-folder" / "run.log"
        code = run_config(write_config(tmp_path), log_file=missing)
        assert code == EXIT_CONFIG
        error = capsys.readouterr().err
        assert error == f"tradewind: --log-file: the folder {missing.parent} does not exist\n"

    def test_an_unreachable_store_exits_1(self, tmp_path):
        url = f"sqlite:///{tmp_path / 'no-such-folder' / 'x.db'}"
        code, out, log = run(write_config(tmp_path, store=url), tmp_path)
        assert code == EXIT_ERROR
        assert out == ""
        assert log[-1]["event"] == "run_failed"

    @pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
    def test_a_store_another_run_holds_exits_4_naming_it_without_the_password(
        self, tmp_path, capsys, backend, request
    ):
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / 'held.db'}"
            shown = url
        else:
            pg = urllib.parse.urlsplit(request.getfixturevalue("pg_url"))
            user, _, host = pg.netloc.rpartition("@")
            url = urllib.parse.urlunsplit(pg._replace(netloc=f"{user}:s3cret@{host}"))
            shown = urllib.parse.urlunsplit(pg._replace(netloc=f"{user}:***@{host}"))
        with holding(url) as holder:
            code, out, log = run(write_config(tmp_path, store=url), tmp_path)
            assert holder.poll() is None  # the holder still runs, undisturbed
        assert code == EXIT_STORE_IN_USE
        assert out == ""
        assert log[-1]["event"] == "store_in_use"
        assert log[-1]["store"] == shown
        assert "run_started" not in [r["event"] for r in log]
        error = capsys.readouterr().err
        assert error.startswith(f"tradewind: store {shown} is in use: another run holds")
        assert "s3cret" not in error + json.dumps(log)


class FakeSystem:
    def __init__(self, settings: Any = None) -> None:
        self.settings = settings
        self.stops = 0
        self.swapped: list[Any] = []

    def stop_feed(self):
        self.stops += 1

    async def swap_risk_limits(self, limits):
        self.swapped.append(limits)
        return limits


async def signals(*numbers: int) -> AsyncIterator[int]:
    for number in numbers:
        yield number


class TestSignals:
    async def test_sighup_reloads_and_a_first_sigterm_stops_the_feed(self, tmp_path):
        config = write_config(tmp_path)
        system = FakeSystem(settings_for(tmp_path))
        await _main._handle_signals(
            signals(signal.SIGHUP, signal.SIGTERM),
            system,  # type: ignore[arg-type]
            str(config),
        )
        assert system.stops == 1
        assert [limits.max_position for limits in system.swapped] == [Decimal(1000)]

    async def test_a_second_signal_exits_at_once_with_130(self, tmp_path, monkeypatch):
        def exit_now(code):
            raise SystemExit(code)

        monkeypatch.setattr("tradewind._main.os._exit", exit_now)
        system = FakeSystem()
        with pytest.raises(SystemExit) as exited:
            await _main._handle_signals(
                signals(signal.SIGINT, signal.SIGTERM),
                system,  # type: ignore[arg-type]
                "x",
            )
        assert exited.value.code == EXIT_INTERRUPTED
        assert system.stops == 1


class HungStore(MemoryStore):
    """A memory store whose units holding bars never commit once `hang` is set: a table
    locked by another session (each unit waits for it). `hung` is set once one waits."""

    def __init__(self) -> None:
        super().__init__()
        self.hang = False
        self.hung = trio.Event()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with super().transaction() as tx:
            yield tx
            if self.hang and any(w.table.name == "bars" for w in tx.writes()):
                self.hung.set()
                await trio.sleep_forever()


async def stop_while_the_store_hangs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str = ""
) -> tuple[RunSummary, HungStore, Settings]:
    """A paper run whose bar commits hang (a locked table), ended by a first SIGTERM:
    its summary, its store and its settings."""
    settings = settings_for(
        tmp_path,
        mode="paper",
        data=synthetic(count=100_000, interval=0.001),
        extra=f"[supervision]\nshutdown_timeout = 0.2\n{extra}",
    )
    store = HungStore()
    monkeypatch.setattr(
        _main,
        "open_trading_system",
        functools.partial(open_trading_system, store=store),  # type: ignore[arg-type]
    )
    summaries = []

    async def run() -> None:
        summaries.append(await _main._run(settings, str(tmp_path / "tradewind.toml"), False))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            store.hang = True
            await store.hung.wait()
            os.kill(os.getpid(), signal.SIGTERM)
    return summaries[0], store, settings


class TestStopWhileTheStoreHangs:
    async def test_a_first_sigterm_ends_the_run_though_commits_wait(self, tmp_path, monkeypatch):
        summary, _, _ = await stop_while_the_store_hangs(tmp_path, monkeypatch)
        assert summary.outcome == "stopped"

    async def test_every_accepted_bar_is_in_the_store_or_the_journal(self, tmp_path, monkeypatch):
        """The stop is cut short with bars still queued for persistence: they are
        spilled with its buffer (the next start replays them), none is dead-lettered."""
        summary, store, settings = await stop_while_the_store_hangs(tmp_path, monkeypatch)
        journal = settings.persistence.spill_path
        assert journal is not None
        spilled = [
            record
            for line in journal.read_bytes().splitlines()
            if isinstance(record := decode_record(line), Bar)
        ]
        stored = store.rows("bars")
        assert len(stored) + len(spilled) == summary.bars_accepted > 0
        assert len({(b.instrument, b.ts) for b in spilled}) == len(spilled)
        assert summary.not_kept == 0

    async def test_records_neither_committed_nor_spilled_are_counted_and_the_run_failed(
        self, tmp_path, monkeypatch
    ):
        """With `spill = false` the journal's folder is never made, so the stop's spill
        fails (`spill_failed_at_stop`): what persistence holds is lost with the process,
        and the run says so instead of reporting a clean stop."""
        summary, _, _ = await stop_while_the_store_hangs(
            tmp_path, monkeypatch, "[persistence]\nspill = false\n"
        )
        assert summary.not_kept > 0
        assert summary.outcome == "failed"

    def test_a_run_that_did_not_keep_everything_exits_1(self, tmp_path, monkeypatch):
        async def lost_some(*_args: object) -> RunSummary:
            return summary_of(outcome="failed", not_kept=7)

        monkeypatch.setattr(_main, "_run", lost_some)
        code, out, log = run(write_config(tmp_path), tmp_path)
        assert code == EXIT_ERROR
        assert "records not kept" in out
        failed = [r for r in log if r["event"] == "run_failed"]
        assert [r["not_kept"] for r in failed] == [7]


class TestReloadRisk:
    async def test_valid_limits_are_swapped_into_the_running_risk_actor(self, tmp_path):
        (tmp_path / "running").mkdir()
        settings = settings_for(tmp_path / "running")
        config = write_config(tmp_path, risk=_risk_with(max_position=3))
        async with open_trading_system(settings, store=MemoryStore()) as system:  # type: ignore[arg-type]
            assert await reload_risk(system, str(config))
            assert system.risk.limits.max_position == 3
            system.stop_feed()

    async def test_a_change_of_currency_is_refused_while_running(self, tmp_path):
        (tmp_path / "running").mkdir()
        settings = settings_for(tmp_path / "running")
        config = write_config(tmp_path, risk=RISK + "currency = 'EUR'\n")
        # a file valid on its own: its instruments are quoted in EUR too
        text = config.read_text().replace("tick_size = 0.01", "tick_size = 0.01\ncurrency = 'EUR'")
        config.write_text(text)
        async with open_trading_system(settings, store=MemoryStore()) as system:  # type: ignore[arg-type]
            assert not await reload_risk(system, str(config))
            assert system.risk.limits.currency == "USD"
            system.stop_feed()

    async def test_a_reload_while_the_run_winds_down_is_skipped_not_fatal(self, tmp_path):
        class WoundDown(FakeSystem):
            async def swap_risk_limits(self, limits):
                raise MessageDropped("trading/risk: message dead-lettered (system stopped)")

        config = write_config(tmp_path)
        stopped = WoundDown(settings_for(tmp_path))
        assert not await reload_risk(stopped, str(config))  # type: ignore[arg-type]

    async def test_an_invalid_file_is_refused_and_the_old_limits_stay(self, tmp_path):
        (tmp_path / "running").mkdir()
        settings = settings_for(tmp_path / "running")
        config = write_config(tmp_path, risk=_risk_with(max_position=-1))
        async with open_trading_system(settings, store=MemoryStore()) as system:  # type: ignore[arg-type]
            assert not await reload_risk(system, str(config))
            assert system.risk.limits.max_position == 1000
            system.stop_feed()


def _risk_with(*, max_position: int) -> str:
    return RISK.replace("max_position = 1000", f"max_position = {max_position}")
