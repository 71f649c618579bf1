"""The HTTP API: application factory, middleware and handlers."""
