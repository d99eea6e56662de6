"""tradewind.testing: run the real trading tree deterministically in a test.

`open_harness` runs a strategy on the real actors, the real pure core and a real store
under trio's virtual clock; the fault hooks (`crash`, `disconnect_broker`,
`store_unavailable`) inject failures; the pytest plugin (registered as ``tradewind``)
gives the ``tradewind_harness`` fixture. See ``docs/testing.md``.
"""

# Design notes
# ------------
# * The names load on first use (module `__getattr__`), as in the top package: pytest
#   imports the plugin, and with it this package, in every session before coverage
#   starts; importing the tree here would load every trading module outside coverage's
#   view, and slow every pytest start for nothing.

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_PUBLIC: dict[str, str] = {
    "open_harness": "tradewind.testing._harness",
    "Harness": "tradewind.testing._harness",
    "HarnessError": "tradewind.testing._harness",
    "Synthetic": "tradewind.testing._harness",
    "crash": "tradewind.testing._faults",
    "disconnect_broker": "tradewind.testing._faults",
    "store_unavailable": "tradewind.testing._faults",
    "Fault": "tradewind.testing._faults",
    "Crash": "tradewind.testing._faults",
    "BrokerDisconnect": "tradewind.testing._faults",
    "StoreOutage": "tradewind.testing._faults",
    "InjectedCrash": "tradewind.actors._tree",
    "PaperFaults": "tradewind.actors._paper",
    # The types of open_harness's `instruments`, `risk` and `broker` arguments.
    "InstrumentSection": "tradewind.actors._settings",
    "RiskSection": "tradewind.actors._settings",
    "BrokerSection": "tradewind.actors._settings",
}

__all__ = [
    "open_harness",
    "Harness",
    "HarnessError",
    "Synthetic",
    "crash",
    "disconnect_broker",
    "store_unavailable",
    "Fault",
    "Crash",
    "BrokerDisconnect",
    "StoreOutage",
    "InjectedCrash",
    "PaperFaults",
    "InstrumentSection",
    "RiskSection",
    "BrokerSection",
]

if TYPE_CHECKING:
    from tradewind.actors._paper import PaperFaults as PaperFaults
    from tradewind.actors._settings import BrokerSection as BrokerSection
    from tradewind.actors._settings import InstrumentSection as InstrumentSection
    from tradewind.actors._settings import RiskSection as RiskSection
    from tradewind.actors._tree import InjectedCrash as InjectedCrash
    from tradewind.testing._faults import BrokerDisconnect as BrokerDisconnect
    from tradewind.testing._faults import Crash as Crash
    from tradewind.testing._faults import Fault as Fault
    from tradewind.testing._faults import StoreOutage as StoreOutage
    from tradewind.testing._faults import crash as crash
    from tradewind.testing._faults import disconnect_broker as disconnect_broker
    from tradewind.testing._faults import store_unavailable as store_unavailable
    from tradewind.testing._harness import Harness as Harness
    from tradewind.testing._harness import HarnessError as HarnessError
    from tradewind.testing._harness import Synthetic as Synthetic
    from tradewind.testing._harness import open_harness as open_harness


def __getattr__(name: str) -> object:
    module = _PUBLIC.get(name)
    if module is None:
        msg = f"module 'tradewind.testing' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
