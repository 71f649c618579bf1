"""Cron schedules of runs: stored in SQLite, fired by APScheduler."""
