"""tradewind: a supervised actor runtime for automated trading on trio.

The subpackages are the product: ``tradewind.runtime`` (actors and supervision),
``tradewind.actors`` (the trading vocabulary and the trading actors) and
``tradewind.storage`` (persistence). This top-level package holds the command line and
the test kit, and keeps its own import light so that ``import tradewind`` is cheap.
"""

__version__ = "0.1.0"
