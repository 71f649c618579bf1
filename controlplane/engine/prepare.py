"""Preparing a run once, before any host: source, files, dependencies, work.

The repository is cloned (or the zipped suite downloaded from S3 and
unpacked), spec files discovered, the suite's layout and ``traceloom.yml``
read, dependencies installed (or found in the cache), the repository and
harness packed for shipping, and every file turned into a work item with
its expected cost.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tarfile
from pathlib import Path

import attrs

from controlplane.domain import Run, S3Source, TestRef
from controlplane.engine import discovery, history, repoconfig, s3source, source, suite
from controlplane.engine.deps import DependencyCache
from controlplane.engine.repoconfig import RepoConfig
from controlplane.engine.s3source import S3SuiteSource
from controlplane.engine.workqueue import WorkItem
from controlplane.errors import SourceError
from controlplane.harness import HARNESS_DIR, HARNESS_FILES
from controlplane.logs import SECRET_VALUES, get_logger
from controlplane.remote.dispatch import Payload, setup_script
from controlplane.storage.db import Database, HistoryStore
from controlplane.storage.secrets import SecretStore

log = get_logger(__name__)


@attrs.define(kw_only=True)
class Prepared:
    files: list[str]
    items: list[WorkItem]
    sizes: dict[str, int]
    payload: Payload
    env: dict[str, str]
    suite: str
    start_cost_s: float
    # How long listing the tests kept the first host from them, when an
    # earlier run measured it; the start cost stands in for it otherwise.
    list_cost_s: float | None = None
    checkout: Path
    config: RepoConfig = attrs.Factory(RepoConfig)
    # The Playwright config's path in the repository, for messages.
    config_path: str = "playwright.config.ts"
    # The run's secrets as variables; their values are redacted everywhere
    # (SECRET_VALUES) until ``forget_secrets``.
    secrets: dict[str, str] = attrs.field(factory=dict, repr=False)

    def forget_secrets(self) -> None:
        """Stop redacting this run's secret values (its record is final)."""
        SECRET_VALUES.remove(self.secrets.values())


def _tar_folder(folder: Path, archive: Path, *, skip: frozenset[str]) -> None:
    """Tar ``folder``'s contents without any path segment named in ``skip``."""

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        return None if any(p in skip for p in parts) else info

    with tarfile.open(archive, "w") as tar:
        for child in sorted(folder.iterdir()):
            if child.name not in skip:
                tar.add(child, arcname=child.name, filter=keep)


def harness_archive(target_dir: Path) -> tuple[str, Path]:
    """The harness files as one tar, named by a hash of their contents."""
    digest = hashlib.sha256()
    for name in HARNESS_FILES:
        digest.update(name.encode() + b"\0" + (HARNESS_DIR / name).read_bytes())
    key = digest.hexdigest()[:16]
    archive = target_dir / f"harness-{key}.tar"
    if not archive.exists():
        target_dir.mkdir(parents=True, exist_ok=True)
        partial = archive.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            for name in HARNESS_FILES:
                tar.add(HARNESS_DIR / name, arcname=name)
        partial.rename(archive)
    return key, archive


def lines_by_file(only: list[TestRef], discovered: list[str]) -> dict[str, list[int]]:
    """The tests to rerun that still exist, grouped by file."""
    present = set(discovered)
    lines: dict[str, list[int]] = {}
    for ref in only:
        if ref.file in present:
            lines.setdefault(ref.file, [])
            if ref.line not in lines[ref.file]:
                lines[ref.file].append(ref.line)
    return {f: sorted(ls) for f, ls in lines.items()}


async def prepare_run(
    run: Run,
    workdir: Path,
    *,
    db: Database,
    deps_cache: DependencyCache,
    harness_dir: Path,
    clone_timeout_s: float,
    commit: str | None = None,
    s3: S3SuiteSource | None = None,
    secret_store: SecretStore | None = None,
) -> Prepared:
    """Everything a run needs before its hosts; raises SourceError with why.

    The secrets ``traceloom.yml`` names are read from ``secret_store`` and
    redacted from every log line and record from then on; the caller calls
    ``Prepared.forget_secrets`` once the run's record is final.
    """
    request = run.request
    checkout = workdir / "src"
    # A folder left by a control plane that died is stale: start clean.
    await asyncio.to_thread(shutil.rmtree, workdir, True)
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    if isinstance(request.test_source, S3Source):
        if s3 is None:
            raise SourceError("this control plane is not set up to read from S3")
        sha = await s3.fetch(request.test_source, checkout, timeout_s=clone_timeout_s)
        suite_source = s3source.source_id(request.test_source)
    else:
        sha = await source.clone(
            repo=source.with_credentials(
                request.test_source.git_repo, await db.credential(run.id)
            ),
            branch=request.test_source.git_branch,
            commit=commit or request.commit_sha,
            dest=checkout,
            timeout_s=clone_timeout_s,
        )
        suite_source = request.test_source.git_repo
        await db.update_run(run.id, resolved_sha=sha)
        await asyncio.to_thread(source.check_links, checkout)
    files = await asyncio.to_thread(discovery.discover, checkout, request.test_pattern)
    lines = None
    if request.only is not None:
        lines = lines_by_file(request.only, files)
        files = sorted(lines, key=lambda f: f.encode())
    if not files:
        raise SourceError(
            f"testPattern {request.test_pattern!r} matched no file in the repository"
        )
    await db.update_run(run.id, spec_files=files)
    layout = await asyncio.to_thread(suite.find_layout, checkout, files)
    config = await asyncio.to_thread(repoconfig.load, checkout)
    # A secret's scope names a repository URL, or for S3 suites its s3:// URL.
    secrets = await _secrets(config, suite_source, secret_store)
    SECRET_VALUES.add(secrets.values())
    try:
        return await _prepare_rest(
            run, workdir, checkout, files, lines, sha, layout, config, secrets,
            db=db, deps_cache=deps_cache, harness_dir=harness_dir,
            suite_source=suite_source,
        )  # fmt: skip
    except BaseException:
        SECRET_VALUES.remove(secrets.values())
        raise


async def _secrets(
    config: RepoConfig, repo: str, store: SecretStore | None
) -> dict[str, str]:
    """The variables of the secrets ``config`` names, for a run of ``repo``."""
    if not config.secrets:
        return {}
    names = {ref.name for ref in config.secrets.values()}
    values = await store.resolve(repo, names) if store is not None else {}
    for variable, ref in sorted(config.secrets.items(), key=lambda i: i[1].line):
        if ref.name not in values:
            raise SourceError(
                f"{repoconfig.FILE_NAME} line {ref.line}: secret {ref.name!r} (for"
                f" {variable}) is not set for this repository; set it with"
                f" `traceloom secrets set {ref.name} --scope {repo}` or"
                " PUT /api/secrets/{name}"
            )
    return {variable: values[ref.name] for variable, ref in config.secrets.items()}


async def _prepare_rest(
    run: Run,
    workdir: Path,
    checkout: Path,
    files: list[str],
    lines: dict[str, list[int]] | None,
    sha: str,
    layout: suite.SuiteLayout,
    config: RepoConfig,
    secrets: dict[str, str],
    *,
    db: Database,
    deps_cache: DependencyCache,
    harness_dir: Path,
    suite_source: str,
) -> Prepared:
    request = run.request
    deps = await deps_cache.ensure(
        checkout / layout.package_dir,
        layout.manager,
        env={**config.env, **secrets},
    )
    suite_archive = workdir / "suite.tar"
    await asyncio.to_thread(
        _tar_folder, checkout, suite_archive, skip=frozenset({".git", "node_modules"})
    )
    harness_key, archive = await asyncio.to_thread(harness_archive, harness_dir)

    key = history.suite_key(suite_source, request.test_pattern)
    store = HistoryStore(db)
    sizes = {f: (checkout / f).stat().st_size for f in files}
    estimates = history.estimate_costs(sizes, await store.file_costs(key))
    start_cost = await store.start_cost(key)
    list_cost = await store.list_cost(key)
    items = [
        WorkItem(
            file=f,
            selectors=tuple(f"{f}\t{n}" for n in lines[f]) if lines else (f,),
            cost_s=estimates[f].cost_s,
            known=estimates[f].known,
        )
        for f in files
    ]
    log.info(
        "run.prepared",
        files=len(files),
        sha=sha,
        history=start_cost is not None,
        manager=layout.manager.label,
        setup_steps=len(config.setup),
    )
    steps = [(step.dir, step.run) for step in config.setup]
    return Prepared(
        files=files,
        items=items,
        sizes=sizes,
        env=config.env,
        suite=key,
        start_cost_s=history.DEFAULT_START_COST_S if start_cost is None else start_cost,
        list_cost_s=list_cost,
        checkout=checkout,
        config=config,
        config_path=(
            f"{layout.config_dir}/{layout.config_file}"
            if layout.config_dir
            else layout.config_file
        ),
        secrets=secrets,
        payload=Payload(
            harness_key=harness_key,
            harness_archive=archive,
            deps=deps,
            suite_archive=suite_archive,
            config_dir=layout.config_dir,
            package_dir=layout.package_dir,
            setup_script=setup_script(steps),
            setup_commands=tuple(command for _, command in steps),
        ),
    )
