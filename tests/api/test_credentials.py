"""A token inside a git URL is used for the clone and kept out of records."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from controlplane.settings import Settings
from tests.conftest import WaitForRun

SECRET = "s3cretTOKENvalue"


async def test_git_token_never_reaches_the_run_record(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    settings: Settings,
) -> None:
    """The run shows the URL without credentials, and the database forgets it."""
    body = {
        # Port 9 on loopback refuses at once, so the clone fails quickly.
        "testSource": {
            "type": "git",
            "gitRepo": f"http://ci:{SECRET}@127.0.0.1:9/suite.git",
            "gitBranch": "main",
        },
        "testPattern": "tests/*.spec.ts",
    }

    created = await client.post("/api/runs", json=body, headers=auth)
    run = await wait_for_run((await created.json())["id"])
    raw = await (await client.get(f"/api/runs/{run['id']}", headers=auth)).read()
    database = b"".join(
        path.read_bytes()
        for path in settings.data_dir.iterdir()
        if path.name.startswith("traceloom.sqlite3")
    )

    assert run["status"] == "errored"
    assert run["testSource"]["gitRepo"] == "http://127.0.0.1:9/suite.git"
    assert SECRET.encode() not in raw
    assert SECRET.encode() not in database
