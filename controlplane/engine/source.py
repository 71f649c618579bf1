"""Fetching a run's tests: a git clone at a branch, optionally at a commit."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from controlplane.engine.commands import run_command
from controlplane.errors import SourceError
from controlplane.logs import redact_text

_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    # Only transports that fetch data; ``ext::`` would run a command.
    "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_LFS_SKIP_SMUDGE": "1",
}


def _reason(stderr: bytes, fallback: str) -> str:
    """git's own words: its ``fatal:``/``error:`` lines, else its last lines."""
    text = redact_text(stderr.decode(errors="replace"))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    chosen = [line for line in lines if line.startswith(("fatal:", "error:"))]
    chosen = chosen or lines[-3:]
    return " ".join(chosen)[:1000] or fallback


async def _git(*args: str, cwd: Path | None = None, timeout_s: float) -> str:
    try:
        done = await run_command(
            ["git", *args], cwd=cwd, env={**os.environ, **_GIT_ENV}, timeout_s=timeout_s
        )
    except TimeoutError:
        raise SourceError(f"git {args[0]} took over {timeout_s:.0f}s") from None
    if done.returncode != 0:
        raise SourceError(_reason(done.stderr, f"git {args[0]} failed"))
    return done.stdout.decode().strip()


_SCP_LIKE = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:")


def is_local_repo(repo: str) -> bool:
    """A path or ``file://`` URL: something on the control plane's own disk."""
    if "://" not in repo and _SCP_LIKE.match(repo):
        return False  # git@host:org/repo.git
    return urlsplit(repo).scheme.lower() in ("", "file")


def split_credentials(repo: str) -> tuple[str, str | None]:
    """``https://user:token@host/r.git?t=x`` -> (``https://host/r.git``, secret).

    The user information and the query string (where some hosts take an
    access token) leave an http(s) URL; the secret holds both, as
    ``userinfo?query``. Runs keep the URL without them; the secret is kept
    apart for the clone only and deleted when the run ends. Other schemes
    keep their URL: an ssh user name is not a secret, and a password in one
    is refused at admission (``url_credential_problem``).
    """
    parts = urlsplit(repo)
    if parts.scheme.lower() not in ("http", "https"):
        return repo, None
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at and not parts.query:
        return repo, None
    clean = urlunsplit((parts.scheme, host, parts.path, "", parts.fragment))
    secret = userinfo + (f"?{parts.query}" if parts.query else "")
    return clean, secret


def with_credentials(repo: str, credential: str | None) -> str:
    if not credential:
        return repo
    userinfo, _, query = credential.partition("?")
    parts = urlsplit(repo)
    netloc = f"{userinfo}@{parts.netloc}" if userinfo else parts.netloc
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_credential_problem(repo: str) -> str | None:
    """Why ``repo`` carries a secret TraceLoom cannot keep apart, or None.

    Only http(s) URLs may hold a token: git's ssh transport never sends a
    password from the URL, and an address without a scheme would be stored
    as written.
    """
    parts = urlsplit(repo)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return None
    if "://" in repo:
        userinfo = parts.netloc.rpartition("@")[0]
        if ":" in userinfo:
            return f"{scheme}:// URLs cannot carry a password; use an https token"
        return None
    userinfo = repo.split("/", 1)[0].rpartition("@")[0]
    if ":" in userinfo:
        return "credentials are only accepted in http(s) URLs"
    return None


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


def check_links(root: Path) -> None:
    """Refuse a checkout holding a link that leads out of it.

    The control plane reads the suite's files (package.json, lockfiles,
    traceloom.yml) and would follow such a link to a file of its own.
    """
    top = root.resolve()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if not path.is_symlink():
                continue
            target = path.resolve()
            if target != top and top not in target.parents:
                rel = path.relative_to(root).as_posix()
                raise SourceError(
                    f"{rel} is a link out of the repository ({os.readlink(path)});"
                    " TraceLoom only follows links inside it"
                )
