"""The pytest plugin (entry point ``pytest11``: ``tradewind``): the harness as a fixture.

Installed with tradewind, active in every pytest session: a test asks for
``tradewind_harness`` and gets `open_harness` to call. The harness needs trio's
`MockClock`, which pytest-trio takes from the test's own arguments, so the test also
asks for ``autojump_clock``::

    async def test_buys(tradewind_harness, autojump_clock):
        async with tradewind_harness(MyStrategy, bars=bars) as h:
            await h.run()
        assert h.fills
"""

# Design notes
# ------------
# * The fixture returns the factory, not an opened harness: a test chooses the scenario
#   (strategy, bars, faults), and opening is async while pytest fixtures here are sync.
#   An async fixture would also fix one scenario per test, and the determinism tests run
#   several.

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager

    from tradewind.testing._harness import Harness


@pytest.fixture
def tradewind_harness() -> Callable[..., AbstractAsyncContextManager[Harness]]:
    """`tradewind.testing.open_harness`, to call with a scenario (needs ``autojump_clock``)."""
    # Imported here: the plugin loads in every pytest session, before coverage starts.
    from tradewind.testing._harness import open_harness  # noqa: PLC0415

    factory: Callable[..., AbstractAsyncContextManager[Harness]] = open_harness
    return factory


__all__ = ["tradewind_harness"]
