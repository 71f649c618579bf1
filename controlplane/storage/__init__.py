"""Where state lives: the SQLite database, API keys and the artifact store."""
