"""Unpacking zipped suites: every unsafe entry kind is refused, nothing leaks."""

from __future__ import annotations

import contextlib
import stat
import zipfile
from pathlib import Path

import pytest

from controlplane.engine.unzip import ZipLimits, unpack_zip
from controlplane.errors import SourceError

LIMITS = ZipLimits(max_entries=50, max_unpacked_bytes=10_000)


def _zip(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zipped:
        for info, data in entries:
            zipped.writestr(info, data)
    return path


def _unix(name: str, mode: int) -> zipfile.ZipInfo:
    """An entry as a Unix zip tool writes it: the file type in external_attr."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): "dir" if p.is_dir() else p.read_text()
        for p in sorted(root.rglob("*"))
    }


def test_files_and_folders_are_unpacked_with_plain_modes(tmp_path: Path) -> None:
    """Files land under the target, executables stay executable, nothing else."""
    archive = _zip(
        tmp_path / "suite.zip",
        [
            ("package.json", b"{}"),
            ("tests/", b""),
            ("tests/a.spec.ts", b"a"),
            (_unix("bin/run.sh", stat.S_IFREG | 0o4755), b"#!/bin/sh\n"),
        ],
    )
    target = tmp_path / "out"

    files = unpack_zip(archive, target, LIMITS)

    assert files == 3
    assert _tree(target) == {
        "bin": "dir",
        "bin/run.sh": "#!/bin/sh\n",
        "package.json": "{}",
        "tests": "dir",
        "tests/a.spec.ts": "a",
    }
    assert stat.S_IMODE((target / "bin/run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "package.json").stat().st_mode) == 0o644


def test_backslash_separators_become_folders(tmp_path: Path) -> None:
    """A zip made on Windows (``tests\\a.spec.ts``) unpacks into real folders."""
    archive = _zip(
        tmp_path / "suite.zip",
        [("tests\\api\\a.spec.ts", b"a"), ("tests\\b.spec.ts", b"b")],
    )
    target = tmp_path / "out"

    unpack_zip(archive, target, LIMITS)

    assert _tree(target) == {
        "tests": "dir",
        "tests/api": "dir",
        "tests/api/a.spec.ts": "a",
        "tests/b.spec.ts": "b",
    }


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("../escape.txt", "climbs out of the suite folder"),
        ("tests/../../escape.txt", "climbs out of the suite folder"),
        ("..\\escape.txt", "climbs out of the suite folder"),
        ("/etc/escape.txt", "absolute path"),
        ("\\escape.txt", "absolute path"),
        ("C:\\escape.txt", "absolute path"),
        ("c:/escape.txt", "absolute path"),
        (_unix("link", stat.S_IFLNK | 0o777), "symbolic link"),
        (_unix("fifo", stat.S_IFIFO | 0o644), "not a regular file"),
    ],
    ids=[
        "dotdot",
        "nested-dotdot",
        "backslash-dotdot",
        "absolute",
        "backslash-absolute",
        "drive-letter",
        "drive-letter-slash",
        "symlink",
        "fifo",
    ],
)
def test_unsafe_entries_are_refused_and_nothing_is_written(
    tmp_path: Path, entry: zipfile.ZipInfo | str, reason: str
) -> None:
    """An entry that could land outside the target fails the whole zip."""
    archive = _zip(
        tmp_path / "suite.zip",
        [("package.json", b"{}"), (entry, b"/etc/passwd")],
    )
    target = tmp_path / "deep" / "out"

    with pytest.raises(SourceError, match=reason):
        unpack_zip(archive, target, LIMITS)

    assert _tree(target) == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "suite.zip"]
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["out"]


def test_total_size_is_bounded(tmp_path: Path) -> None:
    """A zip that unpacks to more than the limit is refused before writing."""
    archive = _zip(
        tmp_path / "bomb.zip",
        [("a.txt", b"x" * 6_000), ("b.txt", b"x" * 6_000)],
    )
    target = tmp_path / "out"

    with pytest.raises(SourceError, match="unpacks to 12000 bytes, more than"):
        unpack_zip(archive, target, LIMITS)

    assert _tree(target) == {}


def test_entry_count_is_bounded(tmp_path: Path) -> None:
    """A zip of more entries than allowed is refused."""
    archive = _zip(tmp_path / "many.zip", [(f"f{i}.txt", b"") for i in range(51)])
    target = tmp_path / "out"

    with pytest.raises(SourceError, match="51 entries, more than the 50 allowed"):
        unpack_zip(archive, target, LIMITS)

    assert _tree(target) == {}


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([("a.txt", b"1"), ("a.txt", b"2")], "appears twice"),
        ([("a", b"1"), ("a/b.txt", b"2")], "lies inside 'a', which is a file"),
        ([("a", b"1"), ("a/", b"")], "both a file and a folder"),
    ],
    ids=["duplicate", "file-then-child", "file-and-folder"],
)
def test_contradicting_entries_are_refused(
    tmp_path: Path, entries: list[tuple[str, bytes]], reason: str
) -> None:
    """Entries that would overwrite each other fail the zip, with the entry."""
    archive = tmp_path / "bad.zip"
    with (
        pytest.warns(UserWarning, match="Duplicate name")
        if entries[0][0] == entries[1][0]
        else contextlib.nullcontext()
    ):
        _zip(archive, entries)

    with pytest.raises(SourceError, match=reason):
        unpack_zip(archive, tmp_path / "out", LIMITS)


def test_not_a_zip_is_a_clear_error(tmp_path: Path) -> None:
    """Bytes that are no zip give a reason, not a traceback."""
    archive = tmp_path / "suite.zip"
    archive.write_bytes(b"this is a tarball, honest")

    with pytest.raises(SourceError, match="not a valid zip file"):
        unpack_zip(archive, tmp_path / "out", LIMITS)
