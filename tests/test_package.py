"""The distribution's shape: one import name, the three mapped subpackages, typed."""

from __future__ import annotations

import importlib
from importlib import resources

import pytest

import tradewind


@pytest.mark.parametrize("name", ["runtime", "actors", "storage"])
def test_subpackage_is_importable_under_tradewind(name):
    module = importlib.import_module(f"tradewind.{name}")
    assert module.__name__ == f"tradewind.{name}"
    assert resources.files(module).joinpath("py.typed").is_file()


def test_version_is_exposed():
    assert tradewind.__version__.count(".") == 2
