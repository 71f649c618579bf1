"""Unpacking a zipped suite without trusting it.

A zip is checked whole before anything is written: no entry may leave the
target folder (``..`` segments, absolute or drive-letter paths), links and
other special files are refused, and the entry count and unpacked size are
bounded. Sizes are bounded again while writing, since a zip's headers may
lie about them. Entries written with backslash separators (zips made on
Windows) become folders, as their author meant.
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

import attrs

from controlplane.errors import SourceError

_CHUNK = 1 << 16
_DRIVE = re.compile(r"[A-Za-z]:")
# The host system that wrote an entry: Unix keeps its file type in the
# upper half of external_attr, which is where links show up.
_UNIX = 3


@attrs.frozen(kw_only=True)
class ZipLimits:
    max_entries: int
    max_unpacked_bytes: int


@attrs.frozen
class _Entry:
    info: zipfile.ZipInfo
    parts: tuple[str, ...]
    is_dir: bool
    executable: bool


def entry_parts(name: str) -> tuple[str, ...]:
    """The path segments of an entry name; raises SourceError if it escapes."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or _DRIVE.match(posix):
        raise SourceError(f"zip entry {name!r} has an absolute path")
    parts = tuple(p for p in PurePosixPath(posix).parts if p not in ("", "."))
    if ".." in parts:
        raise SourceError(f"zip entry {name!r} climbs out of the suite folder (..)")
    if any("\0" in p for p in parts):
        raise SourceError(f"zip entry {name!r} holds a NUL character")
    return parts


def _check(info: zipfile.ZipInfo) -> _Entry | None:
    parts = entry_parts(info.filename)
    if not parts:
        return None  # "./" or "/" alone: the root itself
    mode = info.external_attr >> 16
    if info.create_system == _UNIX and mode:
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            raise SourceError(
                f"zip entry {info.filename!r} is a symbolic link; a suite's zip"
                " must hold files and folders only"
            )
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise SourceError(f"zip entry {info.filename!r} is not a regular file")
    if info.flag_bits & 0x1:
        raise SourceError(f"zip entry {info.filename!r} is encrypted")
    is_dir = info.filename.endswith(("/", "\\"))
    return _Entry(info, parts, is_dir, bool(mode & 0o111))


def unpack_zip(archive: Path, target: Path, limits: ZipLimits) -> int:
    """Unpack ``archive`` into the (new or empty) folder ``target``; count files.

    Raises SourceError naming the first entry that breaks a rule, or the
    limit exceeded; ``target`` is then left empty.
    """
    target.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as zipped:
            entries = _plan(zipped, limits)
            try:
                return _write(zipped, entries, target, limits)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True, exist_ok=True)
                raise
    except zipfile.BadZipFile as exc:
        raise SourceError(f"the suite is not a valid zip file: {exc}") from None


def _plan(zipped: zipfile.ZipFile, limits: ZipLimits) -> list[_Entry]:
    infos = zipped.infolist()
    if len(infos) > limits.max_entries:
        raise SourceError(
            f"the zip holds {len(infos)} entries, more than the"
            f" {limits.max_entries} allowed"
        )
    declared = sum(info.file_size for info in infos)
    if declared > limits.max_unpacked_bytes:
        raise SourceError(
            f"the zip unpacks to {declared} bytes, more than the"
            f" {limits.max_unpacked_bytes} allowed"
        )
    entries = [entry for info in infos if (entry := _check(info)) is not None]
    files: set[tuple[str, ...]] = set()
    for entry in entries:
        if not entry.is_dir and entry.parts in files:
            raise SourceError(f"zip entry {entry.info.filename!r} appears twice")
        if not entry.is_dir:
            files.add(entry.parts)
    for entry in entries:
        if entry.is_dir and entry.parts in files:
            raise SourceError(
                f"zip entry {entry.info.filename!r} is both a file and a folder"
            )
        for depth in range(1, len(entry.parts)):
            if entry.parts[:depth] in files:
                raise SourceError(
                    f"zip entry {entry.info.filename!r} lies inside"
                    f" {'/'.join(entry.parts[:depth])!r}, which is a file"
                )
    return entries


def _write(
    zipped: zipfile.ZipFile, entries: list[_Entry], target: Path, limits: ZipLimits
) -> int:
    written = 0
    files = 0
    for entry in entries:
        path = target.joinpath(*entry.parts)
        try:
            if entry.is_dir:
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(entry.info) as source, path.open("xb") as sink:
                while chunk := source.read(_CHUNK):
                    written += len(chunk)
                    if written > limits.max_unpacked_bytes:
                        raise SourceError(
                            "the zip unpacks to more than the"
                            f" {limits.max_unpacked_bytes} bytes allowed"
                        )
                    sink.write(chunk)
            path.chmod(0o755 if entry.executable else 0o644)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
            raise SourceError(
                f"zip entry {entry.info.filename!r} cannot be read: {exc}"
            ) from None
        except OSError as exc:
            raise SourceError(
                f"zip entry {entry.info.filename!r} cannot be written:"
                f" {exc.strerror or exc}"
            ) from None
        files += 1
    return files
