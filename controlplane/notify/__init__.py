"""Telling people a run finished: signed webhooks, Slack, GitHub statuses."""
