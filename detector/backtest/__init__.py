"""``fraud-detector backtest``: engines in memory on history files, compared side by side."""
