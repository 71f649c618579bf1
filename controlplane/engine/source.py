"""Fetching a run's tests: a git clone at a branch, optionally at a commit."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from controlplane.errors import SourceError
from controlplane.logs import redact_text

_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    # Only transports that fetch data; ``ext::`` would run a command.
    "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_LFS_SKIP_SMUDGE": "1",
}


async def _git(*args: str, cwd: Path | None = None, timeout_s: float) -> str:
    env = {**os.environ, **_GIT_ENV}
    process = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise SourceError(f"git {args[0]} took over {timeout_s:.0f}s") from None
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        message = redact_text(stderr.decode(errors="replace").strip())
        raise SourceError(
            message.splitlines()[-1] if message else f"git {args[0]} failed"
        )
    return stdout.decode().strip()


async def clone(
    *, repo: str, branch: str, commit: str | None, dest: Path, timeout_s: float
) -> str:
    """Clone ``repo`` at ``branch`` into ``dest``; return the checked-out sha."""
    if repo.startswith("-") or branch.startswith("-"):
        raise SourceError("gitRepo and gitBranch must not start with '-'")
    try:
        await _git(
            "clone", "--quiet", "--no-tags", "--single-branch", "--branch", branch,
            "--", repo, str(dest), timeout_s=timeout_s,
        )  # fmt: skip
    except SourceError as exc:
        raise SourceError(
            f"cannot clone {redact_text(repo)} at branch {branch!r}: {exc}"
        ) from None
    if commit:
        try:
            await _git("cat-file", "-e", f"{commit}^{{commit}}", cwd=dest, timeout_s=60)
        except SourceError:
            raise SourceError(
                f"commit {commit} does not exist on branch {branch!r}"
            ) from None
        try:
            await _git(
                "merge-base", "--is-ancestor", commit, "HEAD", cwd=dest, timeout_s=60
            )
        except SourceError:
            raise SourceError(f"commit {commit} is not on branch {branch!r}") from None
        await _git("checkout", "--quiet", "--detach", commit, cwd=dest, timeout_s=60)
    return await _git("rev-parse", "HEAD", cwd=dest, timeout_s=60)
