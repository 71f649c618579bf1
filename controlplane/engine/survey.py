"""Before any test runs: what the suite's config runs, and where it can.

Listing the tests means running the suite's config (and loading its spec
files), which is the suite's code. The control plane never runs it: the
first host of the run lists the tests (``playwright test --list``, after
the setup steps, which the spec files may need), and reports the config's
projects and which browsers it has. From that listing this module decides,
before any test is dispatched:

- which spec files the pattern matched but the config would not run
  (outside every project's ``testDir``, not matched by ``testMatch``, or
  declaring no test): they are left out and recorded, never sent to a host
  to fail with "No tests found";
- which projects run: those ``traceloom.yml`` selects (every one by
  default), less those whose browser the host lacks, plus the projects
  they depend on. Projects that cannot run are recorded with the reason
  and their tests count as not run, so the run cannot pass without them.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import attrs

from controlplane.engine.repoconfig import FILE_NAME, RepoConfig
from controlplane.errors import SourceError

RUN = "run"
DEPENDENCY = "dependency"
NOT_SELECTED = "notSelected"
UNAVAILABLE = "unavailable"


@attrs.frozen(kw_only=True)
class ProjectPlan:
    name: str
    browser: str
    status: str
    reason: str | None
    tests: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "browser": self.browser,
            "status": self.status,
            "reason": self.reason,
            "tests": self.tests,
        }


@attrs.frozen(kw_only=True)
class Survey:
    """What the listing decided; stored with the run (``to_json``)."""

    # Spec files to dispatch: those with a test in a project that runs.
    files: list[str]
    excluded: list[dict[str, str]]
    projects: list[ProjectPlan]
    # ``--project`` values for every batch; None runs every project.
    run_projects: list[str] | None
    # Listed tests of projects that cannot run (reporter's descriptions).
    unavailable_tests: list[dict[str, Any]] = attrs.field(factory=list)

    @property
    def unavailable_reasons(self) -> list[str]:
        return [
            f"project {_shown(p.name)} did not run ({p.tests} tests): {p.reason}"
            for p in self.projects
            if p.status == UNAVAILABLE
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "excludedFiles": self.excluded,
            "projects": [p.to_json() for p in self.projects],
            "runProjects": self.run_projects,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Survey:
        return cls(
            files=list(data["files"]),
            excluded=list(data["excludedFiles"]),
            projects=[ProjectPlan(**p) for p in data["projects"]],
            run_projects=data["runProjects"],
        )


def _shown(name: str) -> str:
    return repr(name) if name else "(unnamed)"


def _browser_problem(project: dict[str, Any], browsers: dict[str, Any]) -> str | None:
    """Why ``project``'s browser cannot start on the host, or None if it can."""
    if project.get("ownExecutable"):
        return None
    channel = project.get("channel")
    if channel and channel != "chromium" and not str(channel).startswith("chromium-"):
        found = browsers.get("channels", {}).get(channel)
        if found is None:
            return f"channel {channel!r} is not one TraceLoom knows how to find"
        return None if found.get("available") else str(found.get("reason"))
    browser = str(project.get("browser") or "chromium")
    found = browsers.get("browsers", {}).get(browser)
    if found is None:
        return f"the host reported nothing about {browser}"
    return None if found.get("available") else str(found.get("reason"))


def _under(file: str, folder: str) -> bool:
    return not folder or folder == "." or PurePosixPath(file).is_relative_to(folder)


def plan(
    *,
    files: list[str],
    tests: list[dict[str, Any]],
    projects: list[dict[str, Any]],
    browsers: dict[str, Any] | None,
    config: RepoConfig,
    config_path: str,
) -> Survey:
    """Decide the files and projects of a run from its first host's listing.

    Raises SourceError when ``traceloom.yml`` selects a project the config
    does not have.
    """
    # XXX: the first host's browsers stand for every host of the run; on a
    # mixed fleet, a host lacking a browser the first one had fails those
    # tests with Playwright's "Executable doesn't exist" instead of listing
    # them as not run. Asking each host at its first batch would remove it.
    names = [str(p["name"]) for p in projects]
    by_name = {str(p["name"]): p for p in projects}
    selected = _selected(config, names, config_path)
    problems = {
        n: _browser_problem(by_name[n], browsers or {})
        if browsers is not None
        else "the host did not report its browsers"
        for n in selected
    }
    unavailable = {n: why for n, why in problems.items() if why is not None}
    runnable = [n for n in selected if n not in unavailable]
    # A project whose dependency cannot run cannot run either.
    changed = True
    while changed:
        changed = False
        for name in list(runnable):
            for dep in by_name[name].get("dependencies") or []:
                why = unavailable.get(dep) or _browser_problem(
                    by_name.get(dep, {}), browsers or {}
                )
                if dep in by_name and why is not None:
                    unavailable[name] = f"it depends on project {_shown(dep)}: {why}"
                    runnable.remove(name)
                    changed = True
                    break
    closure = _with_dependencies(runnable, by_name)

    counts: dict[str, int] = {}
    for test in tests:
        counts[test["project"]] = counts.get(test["project"], 0) + 1
    plans = []
    for name in names:
        if name in runnable:
            status, reason = RUN, None
        elif name in unavailable:
            status, reason = UNAVAILABLE, unavailable[name]
        elif name in closure:
            status, reason = DEPENDENCY, "runs first: a selected project depends on it"
        else:
            status = NOT_SELECTED
            reason = (
                f"not in the projects {FILE_NAME} selects (line {config.projects_line})"
            )
        plans.append(
            ProjectPlan(
                name=name,
                browser=str(by_name[name].get("browser") or "chromium"),
                status=status,
                reason=reason,
                tests=counts.get(name, 0),
            )
        )

    files_run = {t["file"] for t in tests if t["project"] in closure}
    files_listed = {t["file"] for t in tests}
    excluded = []
    for file in files:
        if file in files_run:
            continue
        if file in files_listed:
            if any(t["file"] == file and t["project"] in unavailable for t in tests):
                continue  # its tests are recorded as not run, with the reason
            only_in = sorted({t["project"] for t in tests if t["file"] == file})
            excluded.append(
                {
                    "file": file,
                    "reason": f"its tests are only in projects {FILE_NAME} does not"
                    f" select ({', '.join(_shown(p) for p in only_in)})",
                }
            )
        else:
            excluded.append(
                {"file": file, "reason": _not_run_reason(file, projects, config_path)}
            )
    everything = set(closure) == set(names)
    return Survey(
        files=[f for f in files if f in files_run],
        excluded=excluded,
        projects=plans,
        run_projects=None if everything else sorted(runnable),
        unavailable_tests=[t for t in tests if t["project"] in unavailable],
    )


def _selected(config: RepoConfig, names: list[str], config_path: str) -> list[str]:
    if config.projects is None:
        return list(names)
    unknown = [p for p in config.projects if p not in names]
    if unknown:
        have = ", ".join(_shown(n) for n in names) or "none"
        raise SourceError(
            f"{FILE_NAME} line {config.projects_line}: project {unknown[0]!r} is not"
            f" in {config_path} (its projects: {have})"
        )
    return [n for n in names if n in config.projects]


def _with_dependencies(
    roots: list[str], by_name: dict[str, dict[str, Any]]
) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        todo.extend(by_name[name].get("dependencies") or [])
    return seen


def _not_run_reason(file: str, projects: list[dict[str, Any]], config_path: str) -> str:
    dirs = sorted({str(p.get("testDir") or "") for p in projects})
    if not any(_under(file, d) for d in dirs):
        shown = ", ".join(d or "." for d in dirs)
        return f"outside the testDir of {config_path} ({shown})"
    return (
        f"{config_path} finds no test in it (its testMatch or testIgnore"
        " leaves it out, or it declares no test)"
    )
