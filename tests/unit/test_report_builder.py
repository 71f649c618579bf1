"""The merged report's bookkeeping: which blobs, from where, built once.

The merge itself (the suite's real Playwright) is exercised end to end in
tests/e2e/test_dashboard.py; here the checks that come before it.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane.domain import GitSource, Run, RunRequest, RunStatus, new_id
from controlplane.engine.runs import FinishedRun
from controlplane.reports.merge import ReportBuilder, blob_key, recorded_root_dir
from controlplane.reports.store import ReportStatus, ReportStore
from controlplane.storage.artifacts import LocalArtifactStore
from controlplane.storage.db import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with Database.open(tmp_path / "db.sqlite3") as opened:
        yield opened


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def builder(db: Database, store: LocalArtifactStore, tmp_path: Path) -> ReportBuilder:
    return ReportBuilder(
        db=db, store=store, scratch_dir=tmp_path / "scratch", timeout_s=60
    )


async def stored_run(db: Database) -> Run:
    run = Run(
        id=new_id("run_"),
        request=RunRequest(
            test_source=GitSource(git_repo="/r", git_branch="main"), test_pattern="*"
        ),
        status=RunStatus.FAILED,
        created_at=time.time(),
    )
    await db.insert_run(run)
    return run


def write_blob(store: LocalArtifactStore, key: str, root_dir: str) -> None:
    """A blob report as Playwright writes it: metadata, then onConfigure."""
    path = store.path_for(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    events = [
        {"method": "onBlobReportMetadata", "params": {"version": 2}},
        {"method": "onConfigure", "params": {"config": {"rootDir": root_dir}}},
    ]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("report.jsonl", "".join(json.dumps(e) + "\n" for e in events))


def finished(run: Run, node_modules: Path | None) -> FinishedRun:
    return FinishedRun(
        run=run,
        checkout=None,
        node_modules=node_modules,
        config_dir="",
        playwright=None if node_modules is None else node_modules / ".bin/playwright",
    )


def fake_node_modules(tmp_path: Path) -> Path:
    """A node_modules whose Playwright is never reached by these checks."""
    modules = tmp_path / "node_modules"
    (modules / ".bin").mkdir(parents=True)
    (modules / ".bin" / "playwright").write_text("#!/bin/sh\nexit 99\n")
    return modules


async def test_a_run_without_batches_has_no_report(
    db: Database, store: LocalArtifactStore, tmp_path: Path
) -> None:
    """Nothing ran: the record says so instead of failing."""
    run = await stored_run(db)

    await builder(db, store, tmp_path).run_finished(finished(run, None))

    record = await ReportStore(db).get(run.id)
    assert record is not None
    assert record.status == ReportStatus.NONE


async def test_missing_blobs_are_named_and_lost_hosts_said(
    db: Database, store: LocalArtifactStore, tmp_path: Path
) -> None:
    """Every batch without a blob is listed with why it has none."""
    run = await stored_run(db)
    await db.save_batch(run.id, 0, 0, [], "done")
    await db.save_batch(run.id, 1, 1, [], "lost")
    await db.save_batch(run.id, 2, 0, [], "done")
    write_blob(store, blob_key(run.id, 0, 0), "/w/runs/x/suite")

    await builder(db, store, tmp_path).run_finished(finished(run, None))

    record = await ReportStore(db).get(run.id)
    assert record is not None
    assert record.status == ReportStatus.FAILED
    assert (
        record.reason == "the suite's Playwright is not installed on the control plane"
    )
    assert record.blobs_expected == 3
    assert record.missing == [
        "batch 1 on shard 1: its host was lost before the batch finished",
        "batch 2 on shard 0: no blob report came back",
    ]


async def test_a_dropped_guess_is_not_expected_in_the_report(
    db: Database, store: LocalArtifactStore, tmp_path: Path
) -> None:
    """A batch whose results were dropped (a wrong guess) owes no blob."""
    run = await stored_run(db)
    await db.save_batch(run.id, 0, 1, [], "dropped")
    await db.save_batch(run.id, 1, 0, [], "done")

    await builder(db, store, tmp_path).run_finished(finished(run, None))

    record = await ReportStore(db).get(run.id)
    assert record is not None
    assert record.blobs_expected == 1
    assert record.missing == ["batch 1 on shard 0: no blob report came back"]


async def test_blobs_from_different_folders_are_not_merged(
    db: Database, store: LocalArtifactStore, tmp_path: Path
) -> None:
    """Shards that ran from different absolute folders get a clear refusal."""
    run = await stored_run(db)
    for batch, root in enumerate(["/hosts/a/runs/x/suite", "/hosts/b/runs/x/suite"]):
        await db.save_batch(run.id, batch, batch, [], "done")
        write_blob(store, blob_key(run.id, batch, batch), root)

    await builder(db, store, tmp_path).run_finished(
        finished(run, fake_node_modules(tmp_path))
    )

    record = await ReportStore(db).get(run.id)
    assert record is not None
    assert record.status == ReportStatus.FAILED
    assert "different folders" in (record.reason or "")
    assert "/hosts/a/runs/x/suite" in (record.reason or "")
    assert not store.path_for(f"{run.id}/report").exists()


async def test_a_report_is_built_once_whoever_asks_again(
    db: Database, store: LocalArtifactStore, tmp_path: Path
) -> None:
    """A second call finds the claim and leaves the first record alone."""
    run = await stored_run(db)
    first = builder(db, store, tmp_path)
    await first.run_finished(finished(run, None))
    record = await ReportStore(db).get(run.id)
    await db.save_batch(run.id, 0, 0, [], "done")

    await builder(db, store, tmp_path).run_finished(finished(run, None))

    assert await ReportStore(db).get(run.id) == record


async def test_a_report_left_building_by_a_stopped_control_plane_ends_failed(
    db: Database,
) -> None:
    """After a restart no report stays ``building`` for ever."""
    run = await stored_run(db)
    reports = ReportStore(db)
    await reports.claim(run.id)

    assert await reports.abandon_unfinished() == 1

    record = await reports.get(run.id)
    assert record is not None
    assert record.status == ReportStatus.FAILED
    assert "stopped" in (record.reason or "")


def test_the_recorded_folder_is_read_from_the_blob(
    store: LocalArtifactStore,
) -> None:
    """The folder a blob was made in comes from its onConfigure event."""
    write_blob(store, "r/shard-0/batch-0/blob/report-0.zip", "/work/runs/r/suite")

    assert (
        recorded_root_dir(store.path_for("r/shard-0/batch-0/blob/report-0.zip"))
        == "/work/runs/r/suite"
    )
