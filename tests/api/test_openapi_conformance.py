"""The served OpenAPI document against the real server, through schemathesis.

Schemathesis generates requests for every operation from the document and
checks each answer: no server error, a documented status code and content
type, documented headers, and a body that fits the schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from controlplane.api.openapi import document
from controlplane.settings import Settings
from tests.api.live import LiveServer, RefusingProvider, live_server

MAX_SERVERS = 4
schema = schemathesis.openapi.from_dict(document(max_server_count=MAX_SERVERS))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose fleet refuses, so generated runs end errored at once."""
    data = tmp_path_factory.mktemp("schemathesis")
    config = Settings(data_dir=data, max_server_count=MAX_SERVERS)
    with live_server(config, provider=RefusingProvider()) as running:
        yield running


@pytest.fixture(scope="module")
def headers(server: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.key(name='schemathesis')}"}


def _local_only(body: Any) -> None:
    """Point a generated git source at a path that cannot exist.

    Generated repository URLs could name anything, the worktree itself
    included; a missing local path makes the clone fail at once, here.
    """
    if not isinstance(body, dict):
        return
    # A schedule's run body too: a generated schedule may fire here.
    for run in (body, body.get("run")):
        source = run.get("testSource") if isinstance(run, dict) else None
        if isinstance(source, dict) and isinstance(source.get("gitRepo"), str):
            source["gitRepo"] = "/nonexistent/schemathesis.git"


def test_the_document_is_served_as_written(server: LiveServer) -> None:
    """``/api/openapi.json`` is the document this test checks against."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"{server.url}/api/openapi.json") as answer:  # noqa: S310
        served = json.load(answer)

    assert served == document(max_server_count=MAX_SERVERS)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_fits_the_document(
    case: schemathesis.Case, server: LiveServer, headers: dict[str, str]
) -> None:
    """No server error, and every status, header and body as documented."""
    _local_only(case.body)

    case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS)


def _finished_run(server: LiveServer, headers: dict[str, str]) -> str:
    """A stored run that has finished (errored: its repository is missing)."""
    import time

    import requests

    body = {
        "testSource": {
            "type": "git",
            "gitRepo": "/nonexistent/r.git",
            "gitBranch": "main",
        },
        "testPattern": "tests/**/*.spec.ts",
    }
    created = requests.post(
        f"{server.url}/api/runs", json=body, headers=headers, timeout=30
    ).json()
    for _ in range(600):
        run = requests.get(created["url"], headers=headers, timeout=30).json()
        if run["finishedAt"]:
            return str(run["id"])
        time.sleep(0.1)
    raise AssertionError("the run did not end")


@pytest.mark.parametrize(
    ("path", "method", "expected"),
    [
        ("/api/runs/{run_id}", "GET", 200),
        ("/api/runs/{run_id}/tests", "GET", 200),
        ("/api/runs/{run_id}/cancel", "POST", 409),
        ("/api/runs/{run_id}/rerun", "POST", 201),
    ],
)
def test_answers_about_a_real_run_fit_the_document(
    server: LiveServer,
    headers: dict[str, str],
    example_run: str,
    path: str,
    method: str,
    expected: int,
) -> None:
    """Generated ids only find 404s; a stored run's answers are checked too.

    The run errored before listing a test, so its rerun is a whole new run
    (201); cancelling it is refused because it has finished (409).
    """
    case = schema[path][method].Case(path_parameters={"run_id": example_run})

    response = case.call_and_validate(
        base_url=server.url, headers=headers, checks=CHECKS
    )

    assert response.status_code == expected


@pytest.fixture(scope="module")
def example_run(server: LiveServer, headers: dict[str, str]) -> str:
    return _finished_run(server, headers)
