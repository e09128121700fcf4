"""Retraining triggers: a cron schedule and a drift threshold, decided by pure
functions from the spec, the last status, a drift measurement and `now`. Only
measure.py does I/O (the drift query, through the analysis' Prometheus client)."""
