"""Spec file discovery: a glob over the repository, relative POSIX paths.

``**`` crosses folders (zero or more), ``*`` and ``?`` stay inside one
path segment, ``[...]`` is a character class and ``{a,b}`` alternatives.
Matching is against the path relative to the repository root. The result is
sorted byte-wise, so every replica and every run sees the same order.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from controlplane.errors import InvalidRequest, SourceError

SKIPPED_FOLDERS = frozenset({".git", "node_modules"})


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a spec-file glob; raise InvalidRequest naming the flaw."""
    if not pattern or pattern.startswith("/"):
        raise InvalidRequest(
            {"testPattern": "must be a relative glob, e.g. tests/**/*.spec.ts"}
        )
    if any(part in (".", "..") for part in pattern.split("/")):
        # Paths are matched as they are inside the repository: a '.' or '..'
        # part could never match one, and would read as leaving it.
        raise InvalidRequest(
            {"testPattern": "must not hold '.' or '..' parts; it is matched"
             " from the repository root"}
        )  # fmt: skip
    try:
        return re.compile(_translate(pattern) + r"\Z", re.DOTALL)
    except re.error as exc:
        raise InvalidRequest({"testPattern": f"invalid glob: {exc.msg}"}) from None


def _translate(pattern: str) -> str:
    out: list[str] = []
    i = 0
    depth = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i) and (i == 0 or pattern[i - 1] == "/"):
            out.append(r"(?:[^/]*/)*")
            i += 3
            continue
        if (
            pattern.startswith("**", i)
            and (i == 0 or pattern[i - 1] == "/")
            and (i + 2 == len(pattern))
        ):
            out.append(r".*")
            i += 2
            continue
        if char == "*":
            out.append(r"[^/]*")
        elif char == "?":
            out.append(r"[^/]")
        elif char == "[":
            start = i + 1
            negate = pattern[start : start + 1] in ("!", "^")
            start += 1 if negate else 0
            end = pattern.find("]", start)
            if end <= start:
                raise InvalidRequest({"testPattern": "unclosed or empty '[' in glob"})
            body = "".join("\\" + c if c in "\\[&~|" else c for c in pattern[start:end])
            out.append("[" + ("^/" if negate else "") + body + "]")
            i = end + 1
            continue
        elif char == "{":
            depth += 1
            out.append("(?:")
        elif char == "}" and depth:
            depth -= 1
            out.append(")")
        elif char == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(char))
        i += 1
    if depth:
        raise InvalidRequest({"testPattern": "unclosed '{' in glob"})
    return "".join(out)


def discover(root: Path, pattern: str) -> list[str]:
    """Every file below ``root`` whose relative path matches ``pattern``."""
    regex = glob_to_regex(pattern)
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED_FOLDERS]
        rel_folder = Path(folder).relative_to(root).as_posix()
        for name in files:
            rel = name if rel_folder == "." else f"{rel_folder}/{name}"
            if regex.match(rel):
                if "\n" in rel or "\r" in rel:
                    raise SourceError(f"spec file name holds a line break: {rel!r}")
                found.append(rel)
    found.sort(key=lambda p: p.encode("utf-8", "surrogateescape"))
    return found
