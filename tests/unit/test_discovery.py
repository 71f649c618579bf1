"""Spec file discovery: the glob dialect and the walk over a real folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.engine.discovery import discover, glob_to_regex
from controlplane.errors import InvalidRequest, SourceError


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        # ** crosses zero or more folders, and only whole folders.
        ("tests/**/*.spec.ts", "tests/a.spec.ts", True),
        ("tests/**/*.spec.ts", "tests/x/a.spec.ts", True),
        ("tests/**/*.spec.ts", "tests/x/y/a.spec.ts", True),
        ("tests/**/*.spec.ts", "testsx/a.spec.ts", False),
        ("tests/**/*.spec.ts", "other/tests/a.spec.ts", False),
        ("**/*.spec.ts", "a.spec.ts", True),
        ("**/*.spec.ts", "deep/er/a.spec.ts", True),
        ("a/**/b/*.ts", "a/b/c.ts", True),
        ("a/**/b/*.ts", "a/x/y/b/c.ts", True),
        ("a/**/b/*.ts", "a/xb/c.ts", False),
        ("tests/**", "tests/x/y.ts", True),
        # * and ? stay inside one path segment.
        ("tests/*.spec.ts", "tests/a.spec.ts", True),
        ("tests/*.spec.ts", "tests/x/a.spec.ts", False),
        ("*.spec.ts", "x/a.spec.ts", False),
        ("tests/?.ts", "tests/a.ts", True),
        ("tests/?.ts", "tests/ab.ts", False),
        ("tests/?.ts", "tests/.ts", False),
        ("a?b.ts", "a/b.ts", False),
        # Character classes.
        ("[abc].ts", "b.ts", True),
        ("[abc].ts", "d.ts", False),
        ("[a-c].ts", "b.ts", True),
        ("[!a].ts", "b.ts", True),
        ("[!a].ts", "a.ts", False),
        ("x[!a]y.ts", "x/y.ts", False),
        # Alternatives, and commas or braces outside them as literals.
        ("{login,signup}.spec.ts", "login.spec.ts", True),
        ("{login,signup}.spec.ts", "signup.spec.ts", True),
        ("{login,signup}.spec.ts", "logout.spec.ts", False),
        ("{a,{b,c}}.ts", "c.ts", True),
        ("a,b.ts", "a,b.ts", True),
        ("a}b.ts", "a}b.ts", True),
        # Everything else is literal: dots, parentheses, plus, dollar.
        ("tests/a.spec.ts", "tests/aXspec.ts", False),
        ("tests/a.spec.ts", "tests/a.spec.tsx", False),
        ("tests/(auth)/*.ts", "tests/(auth)/login.ts", True),
        ("tests/(auth)/*.ts", "tests/auth/login.ts", False),
        ("a+b$.ts", "a+b$.ts", True),
        ("a+b$.ts", "aab.ts", False),
        # Names are Unicode text, not bytes.
        ("tests/é/*.spec.ts", "tests/é/z.spec.ts", True),
        ("tests/?.ts", "tests/é.ts", True),
        ("tests/日本/*.ts", "tests/日本/語.ts", True),
        ("tests/日本/*.ts", "tests/日本.ts", False),
    ],
)
def test_glob_matches_relative_posix_paths_by_its_dialect(
    pattern: str, path: str, matches: bool
) -> None:
    """A glob matches exactly the paths its dialect describes, whole path only."""
    regex = glob_to_regex(pattern)

    found = regex.match(path) is not None

    assert found is matches


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param("", id="empty"),
        pytest.param("/tests/*.spec.ts", id="absolute"),
        pytest.param("/", id="root"),
        pytest.param("tests/[abc.ts", id="unclosed-class"),
        pytest.param("tests/[].ts", id="empty-class"),
        pytest.param("tests/[!].ts", id="empty-negated-class"),
        pytest.param("tests/{a,b.ts", id="unclosed-brace"),
        pytest.param("{", id="lone-brace"),
        pytest.param("}{", id="reversed-braces"),
    ],
)
def test_invalid_glob_is_refused_naming_test_pattern(pattern: str) -> None:
    """A glob that is empty, absolute or unbalanced is an InvalidRequest."""
    with pytest.raises(InvalidRequest) as caught:
        glob_to_regex(pattern)

    assert list(caught.value.fields) == ["testPattern"]
    assert caught.value.fields["testPattern"]


def test_reversed_class_range_is_refused_naming_test_pattern() -> None:
    """A class like [z-a] is an InvalidRequest, not a regex engine error."""
    with pytest.raises(InvalidRequest) as caught:
        glob_to_regex("tests/[z-a].spec.ts")

    assert list(caught.value.fields) == ["testPattern"]


def test_open_bracket_inside_a_class_is_a_literal() -> None:
    """In [[] the inner '[' is an ordinary character, as in shell globs."""
    regex = glob_to_regex("tests/[[]x].spec.ts")

    found = regex.match("tests/[x].spec.ts") is not None

    assert found


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("test\n", encoding="utf-8")


def test_discover_skips_git_and_node_modules_at_any_depth(tmp_path: Path) -> None:
    """Files inside .git or node_modules are never spec files, even nested."""
    _touch(
        tmp_path,
        "tests/a.spec.ts",
        ".git/hooks/a.spec.ts",
        "node_modules/pkg/a.spec.ts",
        "tests/node_modules/dep/b.spec.ts",
        "tests/sub/.git/c.spec.ts",
    )

    found = discover(tmp_path, "**/*.spec.ts")

    assert found == ["tests/a.spec.ts"]


def test_discover_keeps_other_hidden_folders(tmp_path: Path) -> None:
    """Only .git and node_modules are skipped; other dot-folders are searched."""
    _touch(tmp_path, ".e2e/a.spec.ts")

    found = discover(tmp_path, "**/*.spec.ts")

    assert found == [".e2e/a.spec.ts"]


def test_discover_answers_relative_posix_paths_in_byte_order(tmp_path: Path) -> None:
    """Paths are relative to the root, '/'-separated and sorted by UTF-8 bytes."""
    names = [
        "tests/zé.spec.ts",
        "tests/é/z.spec.ts",
        "tests/b.spec.ts",
        "tests/_u.spec.ts",
        "tests/[x].spec.ts",
        "tests/Spaced dir/c d.spec.ts",
        "tests/B.spec.ts",
        "tests/ze.spec.ts",
        "tests/a/b.spec.ts",
        "tests/a.spec.ts",
    ]
    _touch(tmp_path, *names)

    found = discover(tmp_path, "tests/**/*.spec.ts")

    assert found == [
        "tests/B.spec.ts",
        "tests/Spaced dir/c d.spec.ts",
        "tests/[x].spec.ts",
        "tests/_u.spec.ts",
        "tests/a.spec.ts",
        "tests/a/b.spec.ts",
        "tests/b.spec.ts",
        "tests/ze.spec.ts",
        "tests/zé.spec.ts",
        "tests/é/z.spec.ts",
    ]
    assert found == sorted(found, key=lambda p: p.encode("utf-8"))
    assert found != sorted(found, key=str.casefold)


def test_discover_finds_a_name_and_its_suffix_each_once(tmp_path: Path) -> None:
    """a.spec.ts and xa.spec.ts are two files, each found exactly once."""
    _touch(tmp_path, "tests/a.spec.ts", "tests/xa.spec.ts")

    found = discover(tmp_path, "tests/**/*.spec.ts")

    assert found == ["tests/a.spec.ts", "tests/xa.spec.ts"]


def test_discover_by_exact_name_does_not_take_its_suffix(tmp_path: Path) -> None:
    """A literal pattern for a.spec.ts does not also pick up xa.spec.ts."""
    _touch(tmp_path, "tests/a.spec.ts", "tests/xa.spec.ts", "tests/x/a.spec.ts")

    found = discover(tmp_path, "tests/a.spec.ts")

    assert found == ["tests/a.spec.ts"]


def test_discover_answers_nothing_when_nothing_matches(tmp_path: Path) -> None:
    """A pattern that matches no file gives an empty list, not an error."""
    _touch(tmp_path, "tests/a.test.js")

    found = discover(tmp_path, "tests/**/*.spec.ts")

    assert found == []


def test_discover_refuses_a_spec_name_holding_a_line_break(tmp_path: Path) -> None:
    """A matched name with a newline would break the one-per-line file list."""
    _touch(tmp_path, "tests/a\nb.spec.ts")

    with pytest.raises(SourceError, match="line break"):
        discover(tmp_path, "tests/*.spec.ts")


def test_discover_refuses_an_invalid_pattern(tmp_path: Path) -> None:
    """discover() validates the glob the same way the API does."""
    _touch(tmp_path, "tests/a.spec.ts")

    with pytest.raises(InvalidRequest) as caught:
        discover(tmp_path, "/tests/*.spec.ts")

    assert "testPattern" in caught.value.fields
