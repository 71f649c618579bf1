"""The layout rules of ``terraform fmt`` (and ``packer fmt``), checked offline.

Both tools format with HashiCorp's hclwrite, which does two things this
module reproduces line by line:

* indentation: a line that opens brackets (net) adds one level of two
  spaces, however many it opens; lines that close them take it back.
* alignment: consecutive lines ``key = value`` whose value is complete on
  the line form a chain, and the ``=`` of a chain line up one space after
  the longest key. Any other line (blank, comment, block header, a value
  that opens a multi-line bracket) ends the chain.

Spacing inside expressions is not checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_OPENERS = "([{"
_CLOSERS = ")]}"
_HEREDOC = re.compile(r"<<-?([A-Za-z_][A-Za-z0-9_]*)\s*$")


@dataclass(frozen=True)
class LineShape:
    """What hclwrite looks at in one line of code."""

    net_brackets: int
    equal_at: int | None  # index of the attribute's "=", if it completes here
    heredoc_tag: str | None


def _shape(line: str) -> LineShape:
    """Scan one line: brackets in code (not strings or comments), the "="."""
    net = 0
    equal_at: int | None = None
    net_at_equal = 0
    stack: list[str] = []  # "s" string, "i" interpolation (counts braces)
    braces: list[int] = []
    heredoc: str | None = None
    i = 0
    while i < len(line):
        char = line[i]
        pair = line[i : i + 2]
        if stack and stack[-1] == "s":
            if char == "\\":
                i += 2
                continue
            if char == '"':
                stack.pop()
            elif pair in ("${", "%{"):
                stack.append("i")
                braces.append(0)
                i += 2
                continue
            i += 1
            continue

        if char == "#" or pair == "//":
            break
        if pair == "<<":
            match = _HEREDOC.match(line, i)
            if match:
                heredoc = match[1]
                break
        if char == '"':
            stack.append("s")
        elif stack and stack[-1] == "i" and char == "}" and braces[-1] == 0:
            stack.pop()
            braces.pop()
        elif char in _OPENERS:
            if stack:
                braces[-1] += char == "{"
            else:
                net += 1
        elif char in _CLOSERS:
            if stack:
                braces[-1] -= char == "}"
            else:
                net -= 1
        elif char == "=" and not stack and equal_at is None and i > 0:
            before, after = line[i - 1], line[i + 1 : i + 2]
            if before not in "=!<>" and after not in "=>":
                equal_at = i
                net_at_equal = net
        i += 1

    if equal_at is not None and net - net_at_equal != 0:
        equal_at = None
    return LineShape(net_brackets=net, equal_at=equal_at, heredoc_tag=heredoc)


def format_problems(text: str) -> list[str]:
    """Every place where ``text`` differs from what hclwrite would write."""
    problems: list[str] = []
    if "\t" in text:
        problems.append("tab characters (fmt indents with two spaces)")
    if not text.endswith("\n") or text.endswith("\n\n"):
        problems.append("file must end with exactly one newline")

    indents: list[int] = []
    chain: list[tuple[int, str, int]] = []  # (line number, key part, "=" index)
    heredoc_end: str | None = None

    def close_chain() -> None:
        if chain:
            width = max(len(key) for _, key, _ in chain)
            for number, _, equal_at in chain:
                if equal_at != width + 1:
                    problems.append(
                        f"line {number}: '=' at column {equal_at + 1}, "
                        f"fmt aligns this group at column {width + 2}"
                    )
        chain.clear()

    for number, line in enumerate(text.split("\n")[:-1], start=1):
        if heredoc_end is not None:
            if line.strip() == heredoc_end:
                heredoc_end = None
            continue
        if line != line.rstrip():
            problems.append(f"line {number}: trailing whitespace")
        if not line.strip():
            close_chain()
            continue

        shape = _shape(line)
        if shape.net_brackets < 0:
            closed = -shape.net_brackets
            while closed > 0 and indents:
                if closed >= indents[-1]:
                    closed -= indents.pop()
                else:
                    indents[-1] -= closed
                    closed = 0
        expected = 2 * len(indents)
        actual = len(line) - len(line.lstrip(" "))
        if actual != expected:
            problems.append(
                f"line {number}: indented {actual} spaces, fmt uses {expected}"
            )
        if shape.net_brackets > 0:
            indents.append(shape.net_brackets)

        if shape.equal_at is None:
            close_chain()
        else:
            key = line[: shape.equal_at].rstrip()
            chain.append((number, key, shape.equal_at))
            if line[shape.equal_at + 1 : shape.equal_at + 2] != " ":
                problems.append(f"line {number}: fmt puts one space after '='")
        if shape.heredoc_tag is not None:
            close_chain()
            heredoc_end = shape.heredoc_tag
    close_chain()
    return problems
