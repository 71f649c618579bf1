"""Fleet providers: where a run's hosts come from and how they are released."""
