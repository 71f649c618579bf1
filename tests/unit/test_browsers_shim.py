"""browsers.cjs: the host's browsers for the suite's own Playwright version."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from controlplane.harness import HARNESS_DIR

BROWSERS = {
    "browsers": [
        {"name": "chromium", "revision": "1200", "installByDefault": True},
        {"name": "chromium-headless-shell", "revision": "1200"},
        {"name": "firefox", "revision": "1500", "installByDefault": True},
        {"name": "webkit", "revision": "2300", "installByDefault": True},
        {"name": "ffmpeg", "revision": "1011", "installByDefault": True},
    ]
}


def make_core(folder: Path, version: str = "1.61.0") -> Path:
    core = folder / "playwright-core"
    core.mkdir(parents=True)
    (core / "package.json").write_text(
        json.dumps({"name": "playwright-core", "version": version})
    )
    (core / "browsers.json").write_text(json.dumps(BROWSERS))
    return core


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def shim(suite: Path, store: Path, tmp: Path, chromium: str = "") -> dict[str, Any]:
    out, report = tmp / "out", tmp / "report.json"
    subprocess.run(
        ["node", str(HARNESS_DIR / "browsers.cjs"), str(suite), str(out), chromium,
         str(report)],
        env={**os.environ, "TRACELOOM_HOST_BROWSERS_PATH": str(store)},
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    found: dict[str, Any] = json.loads(report.read_text())
    return found


def test_chromium_path_stands_in_and_exact_store_builds_are_linked(
    tmp_path: Path,
) -> None:
    """Chromium from the setting; WebKit of the right revision from the store.

    Firefox of another revision does not drive this Playwright: unavailable,
    saying which build it needs.
    """
    suite = tmp_path / "suite"
    make_core(suite / "node_modules")
    store = tmp_path / "store"
    executable(store / "webkit-2300" / "pw_run.sh")
    executable(store / "firefox-1400" / "firefox" / "firefox")

    report = shim(suite, store, tmp_path, chromium="/usr/bin/chromium")

    out = tmp_path / "out"
    assert report["playwright"] == "1.61.0"
    assert report["browsers"]["chromium"]["available"] is True
    launcher = (out / "chromium-1200" / "chrome-linux64" / "chrome").resolve()
    assert launcher == (out / "chromium-launcher").resolve()
    assert "/usr/bin/chromium" in launcher.read_text()
    assert (
        out / "chromium_headless_shell-1200" / "chrome-linux" / "headless_shell"
    ).exists()
    assert report["browsers"]["webkit"] == {
        "available": True,
        "path": str((store / "webkit-2300" / "pw_run.sh").resolve()),
    }
    assert os.readlink(out / "webkit-2300") == str(store / "webkit-2300")
    firefox = report["browsers"]["firefox"]
    assert firefox["available"] is False
    assert (
        "no Playwright Firefox build 1500, which Playwright 1.61.0 needs"
        in (firefox["reason"])
    )
    assert report["channels"]["chrome"]["available"] is os.path.exists(
        "/opt/google/chrome/chrome"
    )


def test_without_a_chromium_path_the_newest_store_chromium_stands_in(
    tmp_path: Path,
) -> None:
    """A runner image built for another Playwright still gives this one Chromium."""
    suite = tmp_path / "suite"
    make_core(suite / "node_modules")
    store = tmp_path / "store"
    executable(store / "chromium-1100" / "chrome-linux" / "chrome")
    newest = executable(store / "chromium-1150" / "chrome-linux" / "chrome")

    report = shim(suite, store, tmp_path)

    assert report["browsers"]["chromium"]["available"] is True
    assert str(newest) in (tmp_path / "out" / "chromium-launcher").read_text()


def test_no_chromium_anywhere_is_unavailable_with_the_fix(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    make_core(suite / "node_modules")

    report = shim(suite, tmp_path / "empty-store", tmp_path)

    chromium = report["browsers"]["chromium"]
    assert chromium["available"] is False
    assert "TRACELOOM_CHROMIUM_PATH is not set" in chromium["reason"]


def test_playwright_core_is_found_through_pnpm_links(tmp_path: Path) -> None:
    """@playwright/test links into node_modules/.pnpm; its core is a sibling."""
    pnpm = tmp_path / "repo" / "node_modules" / ".pnpm"
    test_pkg = pnpm / "@playwright+test@1.65.2" / "node_modules"
    (test_pkg / "@playwright" / "test").mkdir(parents=True)
    (test_pkg / "@playwright" / "test" / "package.json").write_text(
        '{"name": "@playwright/test", "version": "1.65.2"}'
    )
    (test_pkg / "playwright").symlink_to(
        "../../playwright@1.65.2/node_modules/playwright"
    )
    pw = pnpm / "playwright@1.65.2" / "node_modules"
    (pw / "playwright").mkdir(parents=True)
    (pw / "playwright" / "package.json").write_text('{"name": "playwright"}')
    make_core(pnpm / "playwright-core@1.65.2" / "node_modules", version="1.65.2")
    (pw / "playwright-core").symlink_to(
        "../../playwright-core@1.65.2/node_modules/playwright-core"
    )
    member = tmp_path / "repo" / "e2e" / "node_modules" / "@playwright"
    member.mkdir(parents=True)
    (member / "test").symlink_to(
        "../../../node_modules/.pnpm/@playwright+test@1.65.2/node_modules/@playwright/test"
    )

    report = shim(tmp_path / "repo" / "e2e", tmp_path / "store", tmp_path, "/x/chrome")

    assert report["playwright"] == "1.65.2"
    assert report["browsers"]["chromium"]["available"] is True
