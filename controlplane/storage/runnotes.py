"""What a run learnt before and around its tests, kept with its record.

Notes are JSON bodies by run, kind and key: the survey of the suite
(``survey``: spec files the config does not run, projects and why some did
not run, the projects each batch is given), each host's setup steps
(``setup``, keyed by host) and the tests listed to run (``listed``). The
API shows them with the run; a restarted control plane reads the survey
back instead of listing the tests again.
"""

from __future__ import annotations

import json
from typing import Any

from controlplane.storage.db import Database

SURVEY = "survey"
SETUP = "setup"
# Every test the listing found to run, so that a test that never reports
# (its host lost twice, the run timed out or was cancelled first) is still
# counted: ``{"shard": <listing shard>, "tests": [{id, file, line, ...}]}``.
LISTED = "listed"


class RunNotes:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, run_id: str, kind: str, key: str, body: Any) -> None:
        await self._db._execute(
            "INSERT OR REPLACE INTO run_notes (run_id, kind, key, body)"
            " VALUES (?, ?, ?, ?)",
            (run_id, kind, key, json.dumps(body, sort_keys=True)),
        )

    async def get(self, run_id: str, kind: str) -> dict[str, Any]:
        """``{key: body}`` of the run's notes of ``kind``, by key."""
        rows = await self._db._fetchall(
            "SELECT key, body FROM run_notes WHERE run_id = ? AND kind = ?"
            " ORDER BY key",
            (run_id, kind),
        )
        return {row["key"]: json.loads(row["body"]) for row in rows}
