"""tradewind.actors: the trading vocabulary (pure modules) and the trading actors."""
