"""From the first host's listing: the files and projects a run dispatches."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.engine import survey
from controlplane.engine.repoconfig import RepoConfig
from controlplane.errors import SourceError

HAS_ALL: dict[str, Any] = {
    "browsers": {
        "chromium": {"available": True},
        "firefox": {"available": True},
        "webkit": {"available": True},
    },
    "channels": {"chrome": {"available": True}},
}
NO_FIREFOX: dict[str, Any] = {
    **HAS_ALL,
    "browsers": {
        **HAS_ALL["browsers"],
        "firefox": {"available": False, "reason": "no Firefox here"},
    },
    "channels": {"chrome": {"available": False, "reason": "no Chrome here"}},
}


def project(name: str, browser: str = "chromium", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "browser": browser,
        "channel": None,
        "ownExecutable": False,
        "testDir": "e2e/tests",
        "dependencies": [],
        **extra,
    }


def listed(file: str, project: str, title: str = "t") -> dict[str, Any]:
    return {"id": f"{project}:{file}:{title}", "file": file, "line": 1,
            "project": project, "title": title}  # fmt: skip


def plan(
    files: list[str],
    tests: list[dict[str, Any]],
    projects: list[dict[str, Any]],
    browsers: dict[str, Any] | None = HAS_ALL,
    config: RepoConfig | None = None,
) -> survey.Survey:
    return survey.plan(
        files=files,
        tests=tests,
        projects=projects,
        browsers=browsers,
        config=config or RepoConfig(),
        config_path="e2e/playwright.config.ts",
    )


def test_files_the_config_does_not_run_are_left_out_with_the_reason() -> None:
    """Outside testDir, or inside it without a listed test: each says which."""
    result = plan(
        files=["e2e/helpers/h.spec.ts", "e2e/tests/a.spec.ts", "e2e/tests/b.spec.ts"],
        tests=[listed("e2e/tests/a.spec.ts", "")],
        projects=[project("")],
    )

    assert result.files == ["e2e/tests/a.spec.ts"]
    assert result.excluded == [
        {
            "file": "e2e/helpers/h.spec.ts",
            "reason": "outside the testDir of e2e/playwright.config.ts (e2e/tests)",
        },
        {
            "file": "e2e/tests/b.spec.ts",
            "reason": "e2e/playwright.config.ts finds no test in it (its testMatch or"
            " testIgnore leaves it out, or it declares no test)",
        },
    ]
    assert result.run_projects is None
    assert [p.status for p in result.projects] == ["run"]


def test_project_whose_browser_is_missing_does_not_run_and_says_why() -> None:
    """Its tests are not run (counted), the others run with --project."""
    tests = [
        listed("e2e/tests/a.spec.ts", "chromium"),
        listed("e2e/tests/a.spec.ts", "ff"),
    ]

    result = plan(
        ["e2e/tests/a.spec.ts"], tests, [project("chromium"), project("ff", "firefox")],
        browsers=NO_FIREFOX,
    )  # fmt: skip

    assert result.run_projects == ["chromium"]
    assert result.files == ["e2e/tests/a.spec.ts"]
    assert [(p.name, p.status, p.tests) for p in result.projects] == [
        ("chromium", "run", 1),
        ("ff", "unavailable", 1),
    ]
    assert result.unavailable_tests == [tests[1]]
    assert result.unavailable_reasons == [
        "project 'ff' did not run (1 tests): no Firefox here"
    ]


def test_branded_channel_needs_its_browser_and_own_executable_needs_nothing() -> None:
    """channel 'chrome' needs Google Chrome; an executablePath is the suite's."""
    projects = [
        project("chrome", channel="chrome"),
        project("mine", "firefox", ownExecutable=True),
    ]
    tests = [
        listed("e2e/tests/a.spec.ts", "chrome"),
        listed("e2e/tests/a.spec.ts", "mine"),
    ]

    result = plan(["e2e/tests/a.spec.ts"], tests, projects, browsers=NO_FIREFOX)

    assert [(p.name, p.status) for p in result.projects] == [
        ("chrome", "unavailable"),
        ("mine", "run"),
    ]
    assert result.projects[0].reason == "no Chrome here"


def test_selected_projects_and_their_dependencies_run_the_rest_are_recorded() -> None:
    """traceloom.yml picks chromium; its setup dependency runs first."""
    projects = [
        project("setup"),
        project("chromium", dependencies=["setup"]),
        project("mobile"),
    ]
    tests = [
        listed("e2e/tests/auth.setup.ts", "setup"),
        listed("e2e/tests/a.spec.ts", "chromium"),
        listed("e2e/tests/m.spec.ts", "mobile"),
    ]
    config = RepoConfig(projects=["chromium"], projects_line=3)

    result = plan(
        ["e2e/tests/a.spec.ts", "e2e/tests/m.spec.ts"], tests, projects, config=config
    )

    assert result.run_projects == ["chromium"]
    assert result.files == ["e2e/tests/a.spec.ts"]
    assert [(p.name, p.status) for p in result.projects] == [
        ("setup", "dependency"),
        ("chromium", "run"),
        ("mobile", "notSelected"),
    ]
    assert result.projects[2].reason == (
        "not in the projects traceloom.yml selects (line 3)"
    )
    assert result.excluded == [
        {
            "file": "e2e/tests/m.spec.ts",
            "reason": "its tests are only in projects traceloom.yml does not select"
            " ('mobile')",
        }
    ]
    assert result.unavailable_tests == []


def test_a_project_whose_dependency_cannot_run_cannot_run_either() -> None:
    """chromium depends on a firefox project: both are unavailable."""
    projects = [project("ff", "firefox"), project("chromium", dependencies=["ff"])]
    tests = [
        listed("e2e/tests/a.spec.ts", "ff"),
        listed("e2e/tests/a.spec.ts", "chromium"),
    ]

    result = plan(["e2e/tests/a.spec.ts"], tests, projects, browsers=NO_FIREFOX)

    assert result.run_projects == []
    assert result.files == []
    assert {p.name: p.status for p in result.projects} == {
        "ff": "unavailable",
        "chromium": "unavailable",
    }
    assert result.projects[1].reason == "it depends on project 'ff': no Firefox here"
    assert len(result.unavailable_tests) == 2


def test_unknown_selected_project_names_the_line_and_the_real_projects() -> None:
    config = RepoConfig(projects=["chromium", "safari"], projects_line=7)

    with pytest.raises(SourceError) as caught:
        plan([], [], [project("chromium"), project("webkit", "webkit")], config=config)

    assert str(caught.value) == (
        "traceloom.yml line 7: project 'safari' is not in e2e/playwright.config.ts"
        " (its projects: 'chromium', 'webkit')"
    )


def test_a_host_that_reported_no_browsers_runs_nothing() -> None:
    """Without the host's report, no project is taken to be runnable."""
    result = plan(
        ["e2e/tests/a.spec.ts"],
        [listed("e2e/tests/a.spec.ts", "")],
        [project("")],
        browsers=None,
    )

    assert result.files == []
    assert result.unavailable_reasons == [
        "project (unnamed) did not run (1 tests): the host did not report its browsers"
    ]


def test_the_stored_form_reads_back_the_same() -> None:
    """A restarted control plane reads the survey instead of listing again."""
    result = plan(
        ["e2e/x.spec.ts", "e2e/tests/a.spec.ts"],
        [listed("e2e/tests/a.spec.ts", "c"), listed("e2e/tests/a.spec.ts", "f")],
        [project("c"), project("f", "firefox")],
        browsers=NO_FIREFOX,
    )

    again = survey.Survey.from_json(result.to_json())

    assert again.to_json() == result.to_json()
    assert again.unavailable_reasons == result.unavailable_reasons
