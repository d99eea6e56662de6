"""The pure trading core imports nothing that can do I/O.

Every module named in `actors/PURE_MODULES` may import only the standard-library modules
in `ALLOWED_STDLIB` (computation, no I/O), `attrs`, the other pure modules of
`tradewind.actors`, and `tradewind.runtime._errors`. The check reads the source with
`ast`, so an import hidden under `if TYPE_CHECKING:`, inside a function or spelled
`__import__("os")` is caught as well; importing the module is never needed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ACTORS = Path(__file__).resolve().parents[2] / "actors"

ALLOWED_STDLIB = frozenset(
    {
        "__future__",
        "bisect",
        "collections",
        "dataclasses",
        "datetime",
        "decimal",
        "enum",
        "fractions",
        "functools",
        "hashlib",
        "itertools",
        # json: text encoding of values (the event log's canonical form); it only reads
        # or writes a file object a caller hands it, and the pure modules hand it none.
        "json",
        "math",
        "operator",
        # random: seeded `random.Random` instances for reproducible synthetic data; no I/O.
        "random",
        "re",
        "typing",
        "zoneinfo",
    }
)
ALLOWED_THIRD_PARTY = frozenset({"attrs"})
ALLOWED_TRADEWIND = frozenset({"tradewind.runtime._errors"})


def pure_modules() -> list[str]:
    """The file names listed in `actors/PURE_MODULES` (comments and blanks skipped)."""
    lines = (ACTORS / "PURE_MODULES").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _allowed(name: str, pure: frozenset[str]) -> bool:
    top = name.split(".", maxsplit=1)[0]
    if top in ALLOWED_STDLIB or name in ALLOWED_THIRD_PARTY or name in ALLOWED_TRADEWIND:
        return True
    return name.startswith("tradewind.actors.") and name.removeprefix("tradewind.actors.") in pure


def forbidden_imports(source: str, pure: frozenset[str]) -> list[str]:
    """Every import in `source` outside the allowlist, as ``"line: name"``.

    Args:
        source: the text of a module.
        pure: stems of the pure modules (``{"_values", "_errors", ...}``).
    """
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names = ["." * node.level + (node.module or "")]
            elif node.module == "tradewind.actors":
                # `from tradewind.actors import _values` names a submodule per alias.
                names = [f"tradewind.actors.{alias.name}" for alias in node.names]
            else:
                names = [node.module or ""]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            names = ["__import__(...)"]
        else:
            continue
        found.extend(
            f"{node.lineno}: {name}"
            for name in names
            if name.startswith(".") or name == "__import__(...)" or not _allowed(name, pure)
        )
    return found


def pure_stems() -> frozenset[str]:
    return frozenset(name.removesuffix(".py") for name in pure_modules())


def check_module(path: Path) -> list[str]:
    """`forbidden_imports` of the module file at `path`, against the listed pure modules."""
    return forbidden_imports(path.read_text(), pure_stems())


class TestPureModules:
    def test_the_list_names_the_value_market_data_and_calendar_modules(self):
        assert {"_errors.py", "_values.py", "_marketdata.py", "_calendar.py"} <= set(pure_modules())

    @pytest.mark.parametrize("name", pure_modules())
    def test_listed_module_exists(self, name):
        assert (ACTORS / name).is_file()

    @pytest.mark.parametrize("name", pure_modules())
    def test_listed_module_imports_only_the_allowlist(self, name):
        assert check_module(ACTORS / name) == []


class TestTheCheckItself:
    def test_a_module_file_importing_trio_fails_the_check(self, tmp_path):
        """The same check the listed modules pass, run on a temporary impure module."""
        module = tmp_path / "_impure.py"
        module.write_text(
            '"""Looks pure."""\n\nfrom decimal import Decimal\n\nimport attrs\nimport trio\n'
        )
        assert check_module(module) == ["6: trio"]

    @pytest.mark.parametrize(
        "line",
        [
            "import trio",
            "import structlog",
            "import asyncpg",
            "import sqlite3",
            "import os",
            "import os.path",
            "from io import StringIO",
            "import socket",
            "import logging",
            "import subprocess",
            "import time",
            "import pathlib",
            "import cattrs",
            "import tradewind",
            "from tradewind.runtime import _system",
            "from tradewind.storage._records import BarRecord",
            "from tradewind.actors import Bar",
            "from tradewind.actors._feed import FeedActor",
            "from . import _values",
            "from ._values import Money",
        ],
    )
    def test_a_forbidden_import_is_caught(self, line):
        source = f'"""A pure module."""\n\nimport decimal\n{line}\n'
        found = forbidden_imports(source, frozenset({"_values", "_errors"}))
        assert len(found) == 1
        assert found[0].startswith("4: ")

    def test_an_import_hidden_under_type_checking_is_caught(self):
        source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import trio\n"
        assert forbidden_imports(source, frozenset()) == ["3: trio"]

    def test_an_import_inside_a_function_is_caught(self):
        source = "def f():\n    import asyncpg\n    return asyncpg\n"
        assert forbidden_imports(source, frozenset()) == ["2: asyncpg"]

    def test_a_dynamic_import_is_caught(self):
        assert forbidden_imports("os = __import__('os')\n", frozenset()) == ["1: __import__(...)"]

    def test_allowed_imports_pass(self):
        source = (
            "from __future__ import annotations\n"
            "import decimal, enum, re, zoneinfo\n"
            "from collections.abc import Mapping\n"
            "import attrs\n"
            "from tradewind.actors._values import Money\n"
            "from tradewind.actors import _values\n"
            "from tradewind.runtime._errors import TradewindError\n"
        )
        assert forbidden_imports(source, frozenset({"_values"})) == []

    def test_a_module_not_listed_as_pure_is_not_importable(self):
        source = "from tradewind.actors._values import Money\n"
        assert forbidden_imports(source, frozenset({"_errors"})) == ["1: tradewind.actors._values"]
