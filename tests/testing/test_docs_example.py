"""The example test in docs/testing.md runs, as written, against the real tree."""

from __future__ import annotations

import inspect
import re

import pytest

from tests.testing.conftest import REPO
from tradewind.testing import open_harness

DOC = REPO / "docs" / "testing.md"
BLOCK = re.compile(
    r"<!-- example-test:start -->\s*```python\n(?P<code>.*?)```\s*<!-- example-test:end -->",
    re.DOTALL,
)


def example_tests() -> dict[str, object]:
    match = BLOCK.search(DOC.read_text(encoding="utf-8"))
    assert match is not None, "docs/testing.md lost its example-test block"
    namespace: dict[str, object] = {}
    exec(compile(match["code"], str(DOC), "exec"), namespace)  # noqa: S102 -- our own docs
    return {n: f for n, f in namespace.items() if n.startswith("test_") and callable(f)}


class TestDocsExample:
    def test_the_block_holds_example_tests(self):
        assert len(example_tests()) == 2

    @pytest.mark.parametrize("name", sorted(example_tests()))
    async def test_the_example_passes(self, name, autojump_clock, monkeypatch):
        monkeypatch.chdir(REPO)  # the example names the strategy relative to the repo
        test = example_tests()[name]
        assert inspect.iscoroutinefunction(test)
        await test(tradewind_harness=open_harness, autojump_clock=autojump_clock)
