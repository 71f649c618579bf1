"""The run engine: source, discovery, dependencies, plan, dispatch, verdict."""
