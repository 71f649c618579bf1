"""TraceLoom's control plane: API, run engine, fleet providers and dispatch."""

__version__ = "0.1.0"
