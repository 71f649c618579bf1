"""The ``traceloom`` command.

Exit codes (the same for every subcommand; this is the one place they are
documented, and the docs point here):

    0  success; with ``--wait``, every test passed (flaky ones count as
       passed unless ``--fail-on-flaky``)
    1  tests failed (``--wait``): a test failed or did not run
    2  the run errored, timed out or was cancelled (``--wait``); or the
       command line itself was wrong (click's usage errors, an unreadable
       ``--body`` file); or ``serve`` could not start (a wrong setting, a
       port in use)
    3  the server could not be reached, or it refused the request (a
       missing or revoked key, a key without the scope, an invalid body)
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
import click
from aiohttp import web

from controlplane.errors import TraceLoomError
from controlplane.logs import configure_logging
from controlplane.reports.junit import write_junit
from controlplane.settings import SettingsError, settings_from_env
from controlplane.storage.db import Database, KeyRecord
from controlplane.storage.keys import ALL_SCOPES, create_key

EXIT_OK, EXIT_TESTS_FAILED, EXIT_RUN_ERRORED, EXIT_UNREACHABLE = 0, 1, 2, 3
FINISHED = frozenset({"passed", "failed", "errored", "cancelled", "timed_out"})
T = TypeVar("T")
Json = dict[str, Any]

_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="TRACELOOM_DATA_DIR",
    default=Path(".traceloom"),
    show_default=True,
    help="Folder for the database, artifacts and caches.",
)


class ServerError(click.ClickException):
    """The server could not be reached or refused: reported in one line, exit 3.

    ``transient`` failures (no connection, a 502/503/504) are worth retrying.
    """

    exit_code = EXIT_UNREACHABLE

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class StartError(click.ClickException):
    """``serve`` cannot start: a wrong setting, a port in use. Exit 2."""

    exit_code = EXIT_RUN_ERRORED


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="traceloom")
def main() -> None:
    """TraceLoom: run a Playwright suite across many machines."""


# -- serve ------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to bind.")
@_data_dir
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    default="console",
    show_default=True,
    envvar="TRACELOOM_LOG_FORMAT",
)
@click.option(
    "--operator-password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="TRACELOOM_OPERATOR_PASSWORD_FILE",
    help="A file holding the dashboard's operator password (only a hash is"
    " kept); TRACELOOM_OPERATOR_PASSWORD works too.",
)
def serve(
    host: str,
    port: int,
    data_dir: Path,
    log_format: str,
    operator_password_file: Path | None,
) -> None:
    """Run the control plane (API, run engine, dashboard and schedules)."""
    from controlplane.api.app import make_app

    password = None
    if operator_password_file is not None:
        try:
            password = operator_password_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "is not UTF-8 text"
            raise click.BadParameter(
                f"cannot be read: {reason}", param_hint="--operator-password-file"
            ) from None
        if not password:
            raise click.BadParameter("is empty", param_hint="--operator-password-file")
    try:
        settings = settings_from_env(
            host=host,
            port=port,
            data_dir=data_dir,
            log_format=log_format,
            operator_password=password,
        )
    except SettingsError as exc:
        raise StartError(str(exc)) from None
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    try:
        web.run_app(
            make_app(settings=settings),
            host=settings.host,
            port=settings.port,
            print=lambda _msg: click.echo(
                f"traceloom: serving on http://{settings.host}:{settings.port}",
                err=True,
            ),
            access_log=None,
        )
    except OSError as exc:
        raise StartError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from None
    except TraceLoomError as exc:
        # A setting the control plane cannot start with (an unusable
        # inventory): its reason, not a traceback.
        raise StartError(str(exc)) from None


# -- talking to a server ------------------------------------------------------


class Api:
    """A small client of the HTTP API that turns failures into ServerErrors."""

    RETRIES = 4

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Json | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = False,
    ) -> Json:
        """One request; with ``retry``, unreachable servers are tried again."""
        attempts = self.RETRIES if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return await self._once(method, path, body, params, headers)
            except ServerError as exc:
                if not exc.transient or attempt == attempts:
                    raise
                await asyncio.sleep(min(2**attempt, 10))
        raise AssertionError("unreachable")

    async def _once(
        self,
        method: str,
        path: str,
        body: Json | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> Json:
        url = f"{self.base_url}{path}"
        try:
            async with self.session.request(
                method, url, json=body, params=params, headers=headers
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ServerError(
                f"cannot reach {self.base_url}: {exc or type(exc).__name__}",
                transient=True,
            ) from None
        return _answer(status, text, self.base_url, method, path)


def _answer(status: int, text: str, base_url: str, method: str, path: str) -> Json:
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        data = {"message": text[:200]}
    if status < 400 and isinstance(data, dict):
        return data
    message = data.get("message", "") if isinstance(data, dict) else ""
    fields = data.get("fields") if isinstance(data, dict) else None
    if fields:
        message += ": " + "; ".join(f"{k}: {v}" for k, v in fields.items())
    raise ServerError(
        f"{method} {path} was refused ({status}): {message}".rstrip(": "),
        transient=status in (502, 503, 504),
    )


def _with_api(url: str, api_key: str, work: Callable[[Api], Awaitable[T]]) -> T:
    async def go() -> T:
        timeout = aiohttp.ClientTimeout(total=60)
        headers = {"Authorization": f"Bearer {api_key}"}
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            return await work(Api(session, url))

    return asyncio.run(go())


_url = click.option(
    "--url",
    envvar="TRACELOOM_URL",
    required=True,
    help="The control plane's base URL, e.g. https://traceloom.example.com"
    " [env: TRACELOOM_URL].",
)


def _checked_key(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    # It goes into an HTTP header: only visible ASCII can be sent there.
    value = value.strip()
    if not value or not all("!" <= char <= "~" for char in value):
        raise click.BadParameter(
            "must be an API key (tlk_...): visible ASCII characters only"
        )
    return value


_api_key = click.option(
    "--api-key",
    envvar="TRACELOOM_API_KEY",
    required=True,
    callback=_checked_key,
    help="An API key (tlk_...) [env: TRACELOOM_API_KEY].",
)
_json_out = click.option(
    "--json", "as_json", is_flag=True, help="Print the server's JSON answer."
)
_wait_options = [
    click.option(
        "--wait/--no-wait",
        default=False,
        show_default=True,
        help="Follow the run to its verdict; the exit code tells it.",
    ),
    click.option(
        "--junit",
        type=click.Path(dir_okay=False, path_type=Path),
        help="With --wait, write the results as JUnit XML to this file.",
    ),
    click.option(
        "--fail-on-flaky",
        is_flag=True,
        help="With --wait, exit 1 when a test passed only on a retry.",
    ),
    click.option(
        "--poll-interval",
        type=click.FloatRange(min=0.1),
        default=2.0,
        show_default=True,
        help="Seconds between progress checks.",
    ),
]


def _wait_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_wait_options):
        command = option(command)
    return command


# -- run ------------------------------------------------------------------------


def _body_from(
    body_file: Path | None, flags: Mapping[str, Any], source: Mapping[str, Any]
) -> Json:
    """The request body: the file's JSON (if any) with the flags laid over it."""
    body: Json = {}
    if body_file is not None:
        try:
            text = (
                sys.stdin.read()
                if str(body_file) == "-"
                else body_file.read_text(encoding="utf-8")
            )
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise click.BadParameter(
                f"cannot read {body_file}: {reason}", param_hint="--body"
            ) from None
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--body") from None
        if not isinstance(body, dict):
            raise click.BadParameter("must hold a JSON object", param_hint="--body")
    given_source = {k: v for k, v in source.items() if v is not None}
    if given_source:
        base = body.get("testSource")
        merged = dict(base) if isinstance(base, dict) else {}
        merged.setdefault("type", "git")
        body["testSource"] = {**merged, **given_source}
    body.update({k: v for k, v in flags.items() if v is not None})
    return body


@main.command("run")
@_url
@_api_key
@click.option(
    "--body",
    "body_file",
    type=click.Path(dir_okay=False, path_type=Path, allow_dash=True),
    help="A JSON request body ('-' for stdin); the flags below override it.",
)
@click.option("--repo", help="testSource.gitRepo: the suite's git URL.")
@click.option("--branch", help="testSource.gitBranch.")
@click.option("--pattern", help="testPattern: glob of spec files.")
@click.option("--servers", type=int, help="serverCount  [server default: 1]")
@click.option("--timeout", type=int, help="Per-shard timeout, seconds  [default: 600]")
@click.option("--name", help="A label for the run.")
@click.option("--commit", help="commitSha to test.")
@click.option(
    "--trigger",
    type=click.Choice(["api", "schedule", "manual"]),
    help="triggerSource  [server default: api]",
)
@click.option(
    "--idempotency-key",
    help="Make retries of this command start one run (default: a fresh key,"
    " reused for this command's own retries).",
)
@_wait_flags
def run_command(
    url: str,
    api_key: str,
    body_file: Path | None,
    repo: str | None,
    branch: str | None,
    pattern: str | None,
    servers: int | None,
    timeout: int | None,
    name: str | None,
    commit: str | None,
    trigger: str | None,
    idempotency_key: str | None,
    **wait: Any,
) -> None:
    """Start a run, and with --wait follow it to its verdict."""
    body = _body_from(
        body_file,
        {
            "testPattern": pattern,
            "serverCount": servers,
            "timeout": timeout,
            "name": name,
            "commitSha": commit,
            "triggerSource": trigger,
        },
        {"gitRepo": repo, "gitBranch": branch},
    )
    key = idempotency_key or f"cli-{secrets.token_hex(12)}"

    async def start(api: Api) -> Json:
        return await api.call(
            "POST", "/api/runs", body=body, headers={"Idempotency-Key": key}, retry=True
        )

    _start_and_follow(url, api_key, start, **wait)


def _start_and_follow(
    url: str,
    api_key: str,
    start: Callable[[Api], Awaitable[Json]],
    *,
    wait: bool,
    junit: Path | None,
    fail_on_flaky: bool,
    poll_interval: float,
) -> None:
    async def work(api: Api) -> int:
        created = await start(api)
        click.echo(f"Run {created['id']} {created['status']}: {created['url']}")
        if not wait:
            return EXIT_OK
        run = await follow(api, created["id"], poll_interval_s=poll_interval)
        tests = (await api.call("GET", f"/api/runs/{run['id']}/tests", retry=True))[
            "tests"
        ]
        print_summary(run, tests)
        if junit is not None:
            write_junit(run, tests, junit)
            click.echo(f"JUnit XML: {junit}")
        return exit_code_for(run, fail_on_flaky=fail_on_flaky)

    sys.exit(_with_api(url, api_key, work))


def exit_code_for(run: Json, *, fail_on_flaky: bool) -> int:
    """The exit code that tells a run's verdict (see the module docstring)."""
    status = run["status"]
    if status == "passed":
        flaky = fail_on_flaky and run["counts"]["flaky"] > 0
        return EXIT_TESTS_FAILED if flaky else EXIT_OK
    if status == "failed":
        return EXIT_TESTS_FAILED
    return EXIT_RUN_ERRORED


# -- following a run -----------------------------------------------------------


class ProgressView(Protocol):
    def update(self, run: Json) -> None: ...

    def close(self) -> None: ...


def shard_progress(shard: Json) -> tuple[int, int | None]:
    """Tests done and, once the shard has finished, how many it had."""
    done = int(shard.get("testsDone", 0))
    total = shard["counts"]["total"] if shard["status"] not in _SHARD_ACTIVE else None
    return done, total


_SHARD_ACTIVE = frozenset({"pending", "running"})


def _run_progress(run: Json) -> tuple[int, int | None]:
    shards = [shard_progress(s) for s in run["shards"]]
    done = sum(d for d, _ in shards)
    totals = [t for _, t in shards]
    if run["status"] in FINISHED:
        total = run["counts"]["total"]
        return total - run["counts"]["didNotRun"], total
    known = shards and all(t is not None for t in totals)
    return done, sum(t for t in totals if t is not None) if known else None


def _of(done: int, total: int | None) -> str:
    return f"{done}/{total}" if total is not None else f"{done}/?"


class PlainProgress:
    """One line per change, for logs and pipes."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.last = ""

    def update(self, run: Json) -> None:
        done, total = _run_progress(run)
        shards = ", ".join(
            f"shard {s['index']} {s['status']} {_of(*shard_progress(s))}"
            for s in run["shards"]
        )
        failed = run["counts"]["failed"]
        line = f"{run['status']}: {_of(done, total)} tests done, {failed} failed"
        if shards:
            line += f" ({shards})"
        if line != self.last:
            self.echo(line)
            self.last = line

    def close(self) -> None:
        return None


class BarProgress:
    """Progress bars on a terminal: the run, then one per shard."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.progress.start()
        self.overall = self.progress.add_task("run", total=None)
        self.shards: dict[int, Any] = {}

    def update(self, run: Json) -> None:
        done, total = _run_progress(run)
        self.progress.update(
            self.overall,
            description=f"run {run['status']}",
            completed=done,
            total=total,
        )
        for shard in run["shards"]:
            index = shard["index"]
            if index not in self.shards:
                self.shards[index] = self.progress.add_task("", total=None)
            shard_done, shard_total = shard_progress(shard)
            self.progress.update(
                self.shards[index],
                description=f"  shard {index} {shard['status']}",
                completed=shard_done,
                total=shard_total,
            )

    def close(self) -> None:
        self.progress.stop()


def progress_view() -> ProgressView:
    """Bars on a terminal, plain lines otherwise."""
    if sys.stderr.isatty():
        from rich.console import Console

        return BarProgress(Console(stderr=True))
    return PlainProgress(lambda line: click.echo(line, err=True))


async def follow(api: Api, run_id: str, *, poll_interval_s: float) -> Json:
    """Poll a run until it has finished, showing its progress."""
    view = progress_view()
    try:
        while True:
            run = await api.call("GET", f"/api/runs/{run_id}", retry=True)
            view.update(run)
            if run["status"] in FINISHED:
                return run
            await asyncio.sleep(poll_interval_s)
    finally:
        view.close()


def print_summary(run: Json, tests: list[Json]) -> None:
    counts = run["counts"]
    click.echo(
        f"Run {run['id']} {run['status']}"
        + (f" in {run['durationS']:.1f}s" if run.get("durationS") else "")
        + ": "
        + ", ".join(
            f"{counts[k]} {label}"
            for k, label in (
                ("total", "tests"),
                ("passed", "passed"),
                ("failed", "failed"),
                ("flaky", "flaky"),
                ("skipped", "skipped"),
                ("didNotRun", "did not run"),
            )
        )
    )
    if run.get("reason"):
        click.echo(f"Reason: {run['reason']}")
    _print_left_out(run)
    for test in tests:
        if test["status"] in ("failed", "didNotRun", "flaky"):
            click.echo(f"  {test['status']:<9} {test['file']}:{test['line']}"
                       f" {test['title']}")  # fmt: skip
    click.echo(f"Details: {run['url']}")


def _print_left_out(run: Json) -> None:
    """Spec files and projects the run left out before its tests, and why."""
    for excluded in run.get("excludedFiles") or []:
        click.echo(f"Left out {excluded['file']}: {excluded['reason']}")
    for project in run.get("projects") or []:
        if project["status"] in ("unavailable", "notSelected"):
            name = project["name"] or "(unnamed)"
            click.echo(f"Project {name} not run: {project['reason']}")


# -- runs ------------------------------------------------------------------------


@main.group()
def runs() -> None:
    """List, show, cancel and rerun runs on a server."""


@runs.command("list")
@_url
@_api_key
@click.option("--status", multiple=True, help="Only runs in this status (repeatable).")
@click.option("--name", help="Only runs whose name contains this.")
@click.option("--commit", help="Only runs of commits starting with this.")
@click.option("--trigger", type=click.Choice(["api", "schedule", "manual"]))
@click.option("--after", help="Only runs created at or after (RFC 3339).")
@click.option("--before", help="Only runs created before (RFC 3339).")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--cursor", help="Continue from a previous page's next cursor.")
@_json_out
def runs_list(
    url: str, api_key: str, as_json: bool, status: tuple[str, ...], **query: Any
) -> None:
    """List runs, newest first."""
    params = {
        "status": ",".join(status) if status else None,
        "name": query["name"],
        "commitSha": query["commit"],
        "triggerSource": query["trigger"],
        "createdAfter": query["after"],
        "createdBefore": query["before"],
        "limit": str(query["limit"]),
        "cursor": query["cursor"],
    }
    page = _with_api(
        url,
        api_key,
        lambda api: api.call(
            "GET",
            "/api/runs",
            params={k: v for k, v in params.items() if v is not None},
        ),
    )
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    for run in page["runs"]:
        c = run["counts"]
        click.echo(
            f"{run['id']}  {run['status']:<12} {run['createdAt']}  "
            f"{c['passed']}/{c['total']} passed  {run['name'] or ''}".rstrip()
        )
    if page["nextCursor"]:
        click.echo(f"More: --cursor {page['nextCursor']}")


@runs.command("show")
@_url
@_api_key
@click.argument("run_id")
@_json_out
def runs_show(url: str, api_key: str, run_id: str, as_json: bool) -> None:
    """Show a run: status, counts, shards and its failed tests."""

    async def show(api: Api) -> tuple[Json, list[Json]]:
        run = await api.call("GET", f"/api/runs/{run_id}")
        tests = await api.call("GET", f"/api/runs/{run_id}/tests")
        return run, tests["tests"]

    run, tests = _with_api(url, api_key, show)
    if as_json:
        click.echo(json.dumps(run, indent=2))
        return
    for shard in run["shards"]:
        click.echo(
            f"shard {shard['index']} {shard['status']:<10}"
            f" {_of(*shard_progress(shard))} tests  {shard['host'] or ''}".rstrip()
        )
    print_summary(run, tests)


@runs.command("cancel")
@_url
@_api_key
@click.argument("run_id")
def runs_cancel(url: str, api_key: str, run_id: str) -> None:
    """Cancel a run in flight; its shards stop and its hosts are released."""
    run = _with_api(
        url, api_key, lambda api: api.call("POST", f"/api/runs/{run_id}/cancel")
    )
    click.echo(f"Run {run['id']} {run['status']}")


@runs.command("rerun")
@_url
@_api_key
@click.argument("run_id")
@_wait_flags
def runs_rerun(url: str, api_key: str, run_id: str, **wait: Any) -> None:
    """Start a new run of only the tests that failed in RUN_ID."""
    key = f"cli-{secrets.token_hex(12)}"

    async def start(api: Api) -> Json:
        return await api.call(
            "POST",
            f"/api/runs/{run_id}/rerun",
            headers={"Idempotency-Key": key},
            retry=True,
        )

    _start_and_follow(url, api_key, start, **wait)


# -- schedules ---------------------------------------------------------------------


@main.group()
def schedules() -> None:
    """Create, list, pause, resume and delete cron schedules of runs.

    They need a key with the schedules:manage scope.
    """


def _schedule_line(schedule: Json) -> str:
    state = "paused" if schedule["paused"] else f"next {schedule['nextFireAt']}"
    return (
        f"{schedule['id']}  {schedule['cron']:<16} {schedule['timezone']:<14}"
        f" {state:<32} {schedule['name']}"
    )


@schedules.command("create")
@_url
@_api_key
@click.option("--name", required=True, help="The schedule's name.")
@click.option("--cron", required=True, help="Cron expression, e.g. '0 3 * * *'.")
@click.option(
    "--timezone", default="UTC", show_default=True, help="Time zone of the cron."
)
@click.option("--paused", is_flag=True, help="Create it paused.")
@click.option(
    "--body",
    "body_file",
    type=click.Path(dir_okay=False, path_type=Path, allow_dash=True),
    help="A run body as for POST /api/runs ('-' for stdin); flags override it.",
)
@click.option("--repo", help="testSource.gitRepo: the suite's git URL.")
@click.option("--branch", help="testSource.gitBranch.")
@click.option("--pattern", help="testPattern: glob of spec files.")
@click.option("--servers", type=int, help="serverCount  [server default: 1]")
@click.option("--timeout", type=int, help="Per-shard timeout, seconds  [default: 600]")
@click.option("--run-name", help="The runs' name (default: the schedule's).")
@_json_out
def schedules_create(
    url: str,
    api_key: str,
    name: str,
    cron: str,
    timezone: str,
    paused: bool,
    body_file: Path | None,
    as_json: bool,
    **run: Any,
) -> None:
    """Create a schedule that starts a run at every slot of its cron."""
    body = _body_from(
        body_file,
        {
            "testPattern": run["pattern"],
            "serverCount": run["servers"],
            "timeout": run["timeout"],
            "name": run["run_name"],
        },
        {"gitRepo": run["repo"], "gitBranch": run["branch"]},
    )
    request = {
        "name": name,
        "cron": cron,
        "timezone": timezone,
        "paused": paused,
        "run": body,
    }
    created = _with_api(
        url, api_key, lambda api: api.call("POST", "/api/schedules", body=request)
    )
    if as_json:
        click.echo(json.dumps(created, indent=2))
        return
    click.echo(f"Created schedule {created['id']}.")
    click.echo(_schedule_line(created))


@schedules.command("list")
@_url
@_api_key
@_json_out
def schedules_list(url: str, api_key: str, as_json: bool) -> None:
    """List schedules with their next fire time."""
    found = _with_api(url, api_key, lambda api: api.call("GET", "/api/schedules"))
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for schedule in found["schedules"]:
        click.echo(_schedule_line(schedule))
    if not found["schedules"]:
        click.echo("No schedules.")


def _schedule_action(url: str, api_key: str, schedule_id: str, action: str) -> None:
    changed = _with_api(
        url,
        api_key,
        lambda api: api.call("POST", f"/api/schedules/{schedule_id}/{action}"),
    )
    click.echo(_schedule_line(changed))


@schedules.command("pause")
@_url
@_api_key
@click.argument("schedule_id")
def schedules_pause(url: str, api_key: str, schedule_id: str) -> None:
    """Pause SCHEDULE_ID: no slot fires until it is resumed."""
    _schedule_action(url, api_key, schedule_id, "pause")


@schedules.command("resume")
@_url
@_api_key
@click.argument("schedule_id")
def schedules_resume(url: str, api_key: str, schedule_id: str) -> None:
    """Resume SCHEDULE_ID; slots that fell while it was paused never run."""
    _schedule_action(url, api_key, schedule_id, "resume")


@schedules.command("delete")
@_url
@_api_key
@click.argument("schedule_id")
def schedules_delete(url: str, api_key: str, schedule_id: str) -> None:
    """Delete SCHEDULE_ID (the runs it started stay)."""
    _with_api(
        url, api_key, lambda api: api.call("DELETE", f"/api/schedules/{schedule_id}")
    )
    click.echo(f"Deleted schedule {schedule_id}.")


# -- keys ------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Manage API keys in a control plane's data folder.

    These commands work on the database directly, so the first key can be
    made before any exists; over HTTP, use /api/keys with a keys:manage key.
    """


@contextmanager
def _opened(
    data_dir: Path, *, create: bool = False
) -> Iterator[Callable[[Callable[[Database], Awaitable[T]]], T]]:
    """Work on the data folder's database; only ``create`` may make a new one.

    A mistyped --data-dir must not look like an empty control plane (or get
    a key nobody's server will ever read).
    """
    path = data_dir / "traceloom.sqlite3"
    if not create and not path.is_file():
        raise click.UsageError(
            f"no TraceLoom database in {data_dir} (is --data-dir right?)"
        )

    def run(work: Callable[[Database], Awaitable[T]]) -> T:
        async def go() -> T:
            async with Database.open(path) as db:
                return await work(db)

        try:
            return asyncio.run(go())
        except (OSError, sqlite3.Error) as exc:
            raise click.ClickException(
                f"cannot use the database {path}: {exc}"
            ) from None

    yield run


@keys.command("create")
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(ALL_SCOPES),
    help="Grant only these scopes (repeatable). Default: all scopes.",
)
@_data_dir
def keys_create(name: str, scopes: tuple[str, ...], data_dir: Path) -> None:
    """Create an API key; it is printed once, as the last line."""
    with _opened(data_dir, create=True) as run:
        secret = run(lambda db: create_key(db, name=name, scopes=scopes or ALL_SCOPES))
    click.echo(
        f"Created API key {name!r} with scopes {', '.join(scopes or ALL_SCOPES)}."
    )
    click.echo("Store it now: it is not kept and cannot be shown again.")
    click.echo(secret)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts)) if ts else "-"


@keys.command("list")
@_data_dir
@_json_out
def keys_list(data_dir: Path, as_json: bool) -> None:
    """List keys (never their secrets): id, name, scopes, created, last used."""
    with _opened(data_dir) as run:
        records: list[KeyRecord] = run(lambda db: db.list_keys())
    if as_json:
        from controlplane.api.keys import key_json

        click.echo(json.dumps({"keys": [key_json(r) for r in records]}, indent=2))
        return
    click.echo(f"{'ID':<30} {'NAME':<20} {'CREATED':<16} {'LAST USED':<16} SCOPES")
    for record in records:
        state = f" (revoked {_when(record.revoked_at)})" if record.revoked_at else ""
        click.echo(
            f"{record.id:<30} {record.name[:20]:<20} {_when(record.created_at):<16}"
            f" {_when(record.last_used_at):<16} {','.join(record.scopes)}{state}"
        )


@keys.command("revoke")
@click.argument("key_id")
@_data_dir
def keys_revoke(key_id: str, data_dir: Path) -> None:
    """Revoke the key KEY_ID (from `keys list`); it stops working at once."""
    with _opened(data_dir) as run:
        record = run(lambda db: db.revoke_key(key_id))
    if record is None:
        raise click.BadParameter(f"no key {key_id!r}", param_hint="KEY_ID")
    click.echo(f"Revoked {record.id} ({record.name}) at {_when(record.revoked_at)}.")


# -- secrets ---------------------------------------------------------------------


@main.group()
def secrets_group() -> None:
    """Manage the secrets that traceloom.yml names (over HTTP).

    Values are encrypted on the server and never shown again: these commands
    set, list (names and scopes only) and delete them. A value is read from
    standard input, or asked for without echo on a terminal, never taken
    from the command line (where shell history and ps would keep it).
    """


main.add_command(secrets_group, name="secrets")
_secret_scope = click.option(
    "--scope",
    default="*",
    show_default=True,
    help="'*' for every run, or a repository URL for that repository's runs only.",
)


def _secret_value() -> str:
    if sys.stdin.isatty():
        return str(
            click.prompt("Value", hide_input=True, confirmation_prompt=True, err=True)
        )
    text = sys.stdin.read()
    # One trailing line break is the end of the input, not of the value.
    return text[:-1] if text.endswith("\n") else text


@secrets_group.command("set")
@_url
@_api_key
@click.argument("name")
@_secret_scope
def secrets_set(url: str, api_key: str, name: str, scope: str) -> None:
    """Set the secret NAME (its value from stdin, or asked for on a terminal)."""
    value = _secret_value()
    record = _with_api(
        url,
        api_key,
        lambda api: api.call(
            "PUT", f"/api/secrets/{name}", body={"value": value, "scope": scope}
        ),
    )
    click.echo(f"Set secret {record['name']} for scope {record['scope']}.")


@secrets_group.command("list")
@_url
@_api_key
@_json_out
def secrets_list(url: str, api_key: str, as_json: bool) -> None:
    """List secrets: name, scope and times (never a value)."""
    page = _with_api(url, api_key, lambda api: api.call("GET", "/api/secrets"))
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    click.echo(f"{'NAME':<30} {'UPDATED':<24} SCOPE")
    for record in page["secrets"]:
        click.echo(f"{record['name']:<30} {record['updatedAt']:<24} {record['scope']}")


@secrets_group.command("delete")
@_url
@_api_key
@click.argument("name")
@_secret_scope
def secrets_delete(url: str, api_key: str, name: str, scope: str) -> None:
    """Delete the secret NAME of a scope."""
    _with_api(
        url,
        api_key,
        lambda api: api.call("DELETE", f"/api/secrets/{name}", params={"scope": scope}),
    )
    click.echo(f"Deleted secret {name} for scope {scope}.")
