"""The trading projection: positions, PnL and drawdown, the kill switch, retries, the flood limit."""
