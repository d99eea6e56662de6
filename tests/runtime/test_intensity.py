"""Restart intensity and backoff: the pure arithmetic, without an event loop."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tradewind.runtime import Backoff, InvalidSpec
from tradewind.runtime._intensity import (
    NO_BACKOFF,
    backoff_delay,
    intensity_exceeded,
    record_restart,
)

times = st.lists(st.floats(min_value=0, max_value=1e6), max_size=30).map(sorted)
windows = st.floats(min_value=0.001, max_value=1e4)


class TestRecordRestart:
    def test_keeps_only_restarts_inside_the_window(self):
        assert record_restart((1.0, 5.0, 9.0), 12.0, 5.0) == (9.0, 12.0)

    def test_a_restart_exactly_one_window_ago_falls_out(self):
        assert record_restart((2.0,), 7.0, 5.0) == (7.0,)

    @given(times, windows)
    def test_result_ends_with_now_and_lies_inside_the_window(self, history, within):
        now = (history[-1] if history else 0.0) + 1.0
        result = record_restart(tuple(history), now, within)
        assert result[-1] == now
        assert all(now - within < t <= now for t in result)
        assert list(result) == sorted(result)

    @given(times, windows)
    def test_is_idempotent_on_the_pruned_part(self, history, within):
        now = (history[-1] if history else 0.0) + 1.0
        once = record_restart(tuple(history), now, within)
        assert record_restart(once[:-1], now, within) == once


class TestIntensityExceeded:
    def test_allows_exactly_max_restarts(self):
        assert not intensity_exceeded((1.0, 2.0, 3.0), 3)

    def test_one_more_than_max_restarts_exceeds(self):
        assert intensity_exceeded((1.0, 2.0, 3.0, 4.0), 3)

    def test_zero_max_restarts_fails_on_the_first(self):
        assert intensity_exceeded((1.0,), 0)

    @given(st.integers(min_value=0, max_value=50), st.integers(min_value=0, max_value=20))
    def test_n_restarts_in_one_instant_exceed_exactly_when_over_the_limit(self, n, limit):
        history: tuple[float, ...] = ()
        for _ in range(n):
            history = record_restart(history, 10.0, 1.0)
        assert intensity_exceeded(history, limit) == (n > limit)


class TestBackoffDelay:
    def test_grows_exponentially_without_jitter(self):
        policy = Backoff(initial=0.5, multiplier=2, maximum=100, jitter=0)
        rng = random.Random(1)
        assert [backoff_delay(policy, n, rng) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]

    def test_is_capped_at_the_maximum(self):
        policy = Backoff(initial=1, multiplier=10, maximum=30, jitter=0)
        assert backoff_delay(policy, 5, random.Random(1)) == 30

    @pytest.mark.parametrize("multiplier", [10, 10.0])
    def test_huge_attempt_counts_do_not_overflow(self, multiplier):
        policy = Backoff(initial=1, multiplier=multiplier, maximum=30, jitter=0)
        assert backoff_delay(policy, 10_000, random.Random(1)) == 30

    def test_no_backoff_is_always_zero(self):
        assert backoff_delay(NO_BACKOFF, 7, random.Random(1)) == 0

    def test_attempts_below_one_count_as_the_first(self):
        policy = Backoff(initial=0.25, jitter=0)
        assert backoff_delay(policy, 0, random.Random(1)) == 0.25

    @given(
        st.floats(min_value=0, max_value=10),
        st.floats(min_value=1, max_value=4),
        st.floats(min_value=0, max_value=1),
        st.integers(min_value=1, max_value=40),
        st.integers(),
    )
    def test_jitter_stays_within_its_band(self, initial, multiplier, jitter, attempt, seed):
        policy = Backoff(initial=initial, multiplier=multiplier, maximum=60, jitter=jitter)
        exact = backoff_delay(Backoff(initial, multiplier, 60, 0), attempt, random.Random(seed))
        delay = backoff_delay(policy, attempt, random.Random(seed))
        assert exact * (1 - jitter) - 1e-9 <= delay <= exact * (1 + jitter) + 1e-9

    @given(st.integers(), st.integers(min_value=1, max_value=10))
    def test_the_same_seed_gives_the_same_delays(self, seed, attempts):
        policy = Backoff(initial=0.1, jitter=0.5)
        first = random.Random(seed)
        second = random.Random(seed)
        assert [backoff_delay(policy, n, first) for n in range(1, attempts + 1)] == [
            backoff_delay(policy, n, second) for n in range(1, attempts + 1)
        ]


class TestBackoffValidation:
    @pytest.mark.parametrize(
        ("kwargs", "fragment"),
        [
            ({"initial": -1}, "initial"),
            ({"initial": float("nan")}, "initial"),
            ({"multiplier": 0.5}, "multiplier"),
            ({"initial": 5, "maximum": 1}, "maximum"),
            ({"jitter": 1.5}, "jitter"),
        ],
    )
    def test_a_malformed_backoff_is_refused(self, kwargs, fragment):
        with pytest.raises(InvalidSpec, match=fragment):
            Backoff(**kwargs)
