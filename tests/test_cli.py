"""The `tradewind` command: run (as a subprocess, with signals), check-config, report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import structlog
import trio
from click.testing import CliRunner, Result
from tradewind.actors._tree import RunSummary
from tradewind.storage import open_store

from tests.system.conftest import EXAMPLES, synthetic, write_config
from tradewind.cli import main

TRADEWIND = [str(Path(sys.executable).parent / "tradewind")]
LONG = synthetic(count=2_000_000)  # far more than a test waits for: it is stopped mid-way


def invoke(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def start(config: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*TRADEWIND, "run", str(config), "--log-format", "json", "--no-progress", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def wait_for(proc: subprocess.Popen[str], event: str, **fields: object) -> dict[str, object]:
    """Read the process's JSON log lines until one has `event` (and a truthy value for each
    field named True, or the given value); return it."""
    assert proc.stderr is not None
    for line in proc.stderr:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") != event:
            continue
        if all(record.get(k) if v is True else record.get(k) == v for k, v in fields.items()):
            return dict(record)
    raise AssertionError(f"the process ended without logging {event!r}")


def stored(url: str, run_id: str) -> Any:
    async def read():
        async with open_store(url) as store:
            return await store.run(run_id), await store.run_summary(run_id), await store.counts()

    return trio.run(read)


async def migrate_only(url: str) -> None:
    async with open_store(url):
        pass


class TestRunSubprocess:
    def test_sigterm_mid_replay_exits_0_with_everything_accepted_stored(self, tmp_path):
        url = f"sqlite:///{tmp_path / 'run.db'}"
        proc = start(write_config(tmp_path, data=LONG, store=url))
        started = wait_for(proc, "run_started")
        wait_for(proc, "progress", bars_in=True)  # the replay is under way
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        run, text, counts = stored(url, str(started["run_id"]))
        summary = RunSummary.from_json(text)
        assert run.outcome == "stopped"
        assert summary.outcome == "stopped"
        assert 0 < summary.bars_accepted < 4_000_000
        assert counts.bars == summary.bars_accepted  # every accepted bar was flushed
        assert counts.fills == summary.fills
        assert counts.orders == summary.orders
        assert "stopped" in out

    def test_sighup_swaps_valid_risk_limits_and_refuses_an_invalid_file(self, tmp_path):
        config = write_config(tmp_path, data=LONG)
        proc = start(config)
        wait_for(proc, "progress", bars_in=True)
        text = config.read_text()
        config.write_text(text.replace("max_position = 1000", "max_position = -5"))
        proc.send_signal(signal.SIGHUP)
        refused = wait_for(proc, "risk_reload_refused")
        assert any("risk.max_position" in p and "-5" in p for p in list(refused["problems"]))  # type: ignore[call-overload]
        config.write_text(text.replace("max_position = 1000", "max_position = 7"))
        proc.send_signal(signal.SIGHUP)
        reloaded = wait_for(proc, "risk_limits_reloaded")
        assert "max_position=Decimal('7')" in str(reloaded["limits"])
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
        assert proc.returncode == 0

    def test_a_second_signal_while_winding_down_exits_130_at_once(self, tmp_path):
        # A supervised process that ignores SIGTERM keeps the orderly stop busy for its
        # whole shutdown timeout: the second signal arrives while the system winds down.
        stubborn = (
            "import os, signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "parent = os.getppid()\n"
            "print('ready', flush=True)\n"
            "while os.getppid() == parent:\n"
            "    time.sleep(0.05)\n"  # ends with its parent: nothing is left behind
        )
        argv = json.dumps([sys.executable, "-c", stubborn])
        extra = f"[[processes]]\nname = 'stubborn'\nargv = {argv}\nshutdown_timeout = 60\n"
        proc = start(write_config(tmp_path, data=LONG, extra=extra))
        wait_for(proc, "process_output", line="ready")
        wait_for(proc, "progress", bars_in=True)
        proc.send_signal(signal.SIGTERM)
        wait_for(proc, "process_stopping")  # the feed has stopped; the tree is stopping
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        assert proc.returncode == 130

    def test_a_first_sigterm_stops_a_run_that_never_goes_quiet(self, tmp_path):
        # The strategy crashes on every bar, its restarts below the restart intensity:
        # the system never goes quiet. The wait for in-flight work after a SIGTERM is
        # bounded by the shutdown timeout; it used to be endless.
        url = f"sqlite:///{tmp_path / 'run.db'}"
        extra = (
            "[supervision]\nmax_restarts = 1000000\nwithin = 1\nbackoff_initial = 0.1\n"
            "backoff_max = 0.1\nshutdown_timeout = 1\n"
        )
        crasher = f"{Path(__file__).parent / 'system' / 'strategies.py'}:Crasher"
        config = write_config(
            tmp_path,
            data=LONG,
            store=url,
            strategy=crasher,
            params="{}",
            extra=extra,
            mode="paper",
        )
        proc = start(config)
        started = wait_for(proc, "run_started")
        wait_for(proc, "child_crashed")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
        run, _text, _counts = stored(url, str(started["run_id"]))
        assert run.outcome == "stopped"
        assert "stopped" in out

    def test_a_second_run_on_the_same_store_exits_4_and_stores_nothing(self, tmp_path):
        # Two instances must never trade from one book: the second used to take the
        # running replay for a killed one, "resume" it and die on ConflictingWrite.
        url = f"sqlite:///{tmp_path / 'run.db'}"
        config = write_config(tmp_path, data=LONG, store=url)
        first = start(config)
        try:
            started = wait_for(first, "run_started")
            wait_for(first, "progress", bars_in=True)
            second = subprocess.run(
                [*TRADEWIND, "run", str(config), "--log-format", "json", "--no-progress"],
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
            assert second.returncode == 4, second.stderr[-2000:]
            assert second.stdout == ""  # no summary: nothing ran
            assert (
                f"tradewind: store {url} is in use: another run holds its run lock "
                f"(process {first.pid})"
            ) in second.stderr
            # Reading and migrating do not need the run lock.
            reported = invoke("report", started["run_id"], "--store", url)
            assert reported.exit_code == 0, reported.output
            assert "no summary was stored (the run did not finish)" in reported.output
            migrated = invoke("db", "migrate", "--url", url)
            assert migrated.exit_code == 0, migrated.output
            assert "schema is up to date" in migrated.output
            first.send_signal(signal.SIGTERM)
            _out, err = first.communicate(timeout=120)
            assert first.returncode == 0, err[-2000:]
        finally:
            first.kill()
            first.wait()
        run, _text, _counts = stored(url, str(started["run_id"]))
        assert run.outcome == "stopped"  # the first run was not disturbed

        async def runs() -> list[str]:
            async with open_store(url) as store:
                return [r.run_id for r in await store.runs()]

        assert trio.run(runs) == [started["run_id"]]  # the second never recorded itself

    def test_a_broken_config_exits_2_with_every_problem_printed(self, tmp_path):
        config = write_config(tmp_path, risk="[risk]\nmax_position = -5\n", mode="backtest")
        result = subprocess.run(
            [*TRADEWIND, "run", str(config)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 2
        assert "risk.max_position (TRADEWIND_RISK__MAX_POSITION): must be >= 0, got -5" in (
            result.stderr
        )
        assert "risk.max_order_notional (TRADEWIND_RISK__MAX_ORDER_NOTIONAL): required" in (
            result.stderr
        )
        assert "mode (TRADEWIND_MODE): expected one of 'replay', 'paper'" in result.stderr


class TestRunInProcess:
    def test_a_replay_prints_its_summary_and_report_prints_it_again(self, tmp_path):
        url = f"sqlite:///{tmp_path / 'report.db'}"
        config = write_config(tmp_path, store=url)
        log = tmp_path / "run.log"
        ran = invoke("run", config, "--log-file", log, "--log-format", "json")
        assert ran.exit_code == 0, ran.output
        assert "completed" in ran.output
        finished = [json.loads(line) for line in log.read_text().splitlines()]
        run_id = next(r["run_id"] for r in finished if r["event"] == "run_finished")
        reported = invoke("report", run_id, "--store", url)
        assert reported.exit_code == 0, reported.output
        assert run_id in reported.output
        digest = next(r["digest"] for r in finished if r["event"] == "run_finished")
        assert digest[:40] in reported.output

    def test_after_a_run_with_a_log_file_lines_go_to_the_current_stderr(self, tmp_path, capsys):
        # The log file is closed with the run; an embedding program (or a test) keeps
        # logging, to the stderr of the moment, not to the closed file.
        log = tmp_path / "run.log"
        ran = invoke("run", write_config(tmp_path), "--log-file", log)
        assert ran.exit_code == 0, ran.output
        written = log.read_text()
        structlog.get_logger().warning("after_the_run")
        assert "after_the_run" in capsys.readouterr().err
        assert log.read_text() == written

    def test_report_of_an_unknown_run_fails(self, tmp_path):
        url = f"sqlite:///{tmp_path / 'empty.db'}"
        trio.run(migrate_only, url)
        result = invoke("report", "nope", "--store", url)
        assert result.exit_code == 1
        assert "no run 'nope'" in result.output

    def test_report_on_a_missing_sqlite_file_creates_nothing(self, tmp_path):
        missing = tmp_path / "typo.db"
        result = invoke("report", "r", "--store", f"sqlite:///{missing}")
        assert result.exit_code == 1
        assert f"no store at {missing}: no such file" in result.output
        assert not missing.exists()

    def test_report_of_an_unfinished_run_says_so(self, tmp_path):
        url = f"sqlite:///{tmp_path / 'unfinished.db'}"

        async def start_only():
            async with open_store(url) as store, store.transaction() as tx:
                tx.start_run("r-unfinished", "hash", 1)

        trio.run(start_only)
        result = invoke("report", "r-unfinished", "--store", url)
        assert result.exit_code == 0
        assert "no summary was stored (the run did not finish)" in result.output

    def test_report_on_an_unreachable_store_fails(self):
        result = invoke("report", "r", "--store", "postgresql://postgres@127.0.0.1:1/test")
        assert result.exit_code == 1
        assert "unreachable" in result.output

    def test_report_with_a_malformed_store_url_is_a_usage_error(self):
        result = invoke("report", "r", "--store", "mysql://u:s3cret@h/db")
        assert result.exit_code == 2
        assert "s3cret" not in result.output

    def test_supervision_giving_up_exits_3(self, tmp_path):
        config = write_config(
            tmp_path,
            strategy=f"{Path(__file__).parent / 'system' / 'strategies.py'}:Crasher",
            params="{}",
            # Intensity over an hour: giving up must not depend on how fast this
            # machine gets through a restart (each logs the crash with its traceback).
            extra="[supervision]\nmax_restarts = 1\nwithin = 3600\nbackoff_initial = 0\n",
        )
        result = invoke("run", config, "--log-file", tmp_path / "log")
        assert result.exit_code == 3
        assert "gave up" in result.output
        # the line names the actor and the error behind it, not only the supervisor
        assert "last crash: trading/strategy: RuntimeError: crasher fails on" in result.output


class TestCheckConfig:
    def test_the_effective_config_is_printed_with_the_password_masked(self, tmp_path):
        config = write_config(tmp_path, store="postgresql://trader:hunter2@db:5432/tw")
        result = invoke("check-config", config)
        assert result.exit_code == 0, result.output
        document = json.loads(result.output)
        assert document["store"]["url"] == "postgresql://trader:***@db:5432/tw"
        assert "hunter2" not in result.output
        assert document["risk"]["max_position"] == "1000"
        assert document["strategy"]["path"].endswith("sma_crossover.py:SmaCrossover")

    def test_the_bundled_examples_are_valid(self):
        for name in ("sma_crossover.toml", "mean_reversion.toml"):
            assert invoke("check-config", EXAMPLES / name).exit_code == 0

    def test_problems_are_printed_and_exit_2(self, tmp_path):
        config = write_config(tmp_path, store="mysql://u:s3cret@h/db")
        result = invoke("check-config", config)
        assert result.exit_code == 2
        assert "store.url (TRADEWIND_STORE__URL): store URL" in result.output
        assert "s3cret" not in result.output
