"""The pytest plugin is registered through the pytest11 entry point and gives the fixture."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import pytest

import tradewind.testing
from tradewind.testing import open_harness


class TestPlugin:
    def test_the_entry_point_names_the_plugin_module(self):
        (point,) = [p for p in entry_points(group="pytest11") if p.name == "tradewind"]
        assert point.value == "tradewind.testing._plugin"

    def test_pytest_loaded_the_plugin_from_the_entry_point(self, request):
        plugin = request.config.pluginmanager.get_plugin("tradewind")
        assert plugin is not None
        assert plugin.__name__ == "tradewind.testing._plugin"

    def test_the_fixture_is_the_harness_factory(self, tradewind_harness):
        assert tradewind_harness is open_harness

    def test_the_plugin_module_loads_afresh(self):
        """Re-imported (pytest imported it before coverage started): it defines the fixture."""
        module = importlib.reload(importlib.import_module("tradewind.testing._plugin"))
        assert module.__all__ == ["tradewind_harness"]
        assert callable(module.tradewind_harness)


class TestPublicSurface:
    def test_the_package_loads_afresh_without_the_tree(self):
        """Re-imported (pytest imported it before coverage started): its lazy surface is whole."""
        module = importlib.reload(tradewind.testing)
        assert set(module._PUBLIC) == set(module.__all__)

    def test_every_public_name_resolves(self):
        for name in tradewind.testing.__all__:
            assert getattr(tradewind.testing, name) is not None
        assert sorted(dir(tradewind.testing)) == sorted(tradewind.testing.__all__)

    def test_the_types_of_the_harness_arguments_are_public(self):
        """docs/testing.md passes `InstrumentSection`, `RiskSection` and `BrokerSection` to
        open_harness: a test imports them from here, not from a private module."""
        from tradewind.actors import _settings

        from tradewind.testing import BrokerSection, InstrumentSection, RiskSection

        assert InstrumentSection is _settings.InstrumentSection
        assert RiskSection is _settings.RiskSection
        assert BrokerSection is _settings.BrokerSection

    def test_an_unknown_name_raises_attribute_error(self):
        with pytest.raises(AttributeError, match="nothing_here"):
            _ = tradewind.testing.nothing_here
