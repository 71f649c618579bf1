"""The local artifact store: keys stay inside the root, tars unpack safely."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from controlplane.errors import TraceLoomError
from controlplane.storage.artifacts import LocalArtifactStore, UnsafeArtifactPath

PREFIX = "run_1/shard-0"


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def add_file(tar: tarfile.TarFile, name: str, data: bytes = b"data") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def add_entry(
    tar: tarfile.TarFile, name: str, kind: bytes, link_target: str = ""
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link_target
    tar.addfile(info)


def files_below(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() or p.is_symlink()
    )


@pytest.mark.parametrize(
    "key",
    [
        "",
        ".",
        "..",
        "../x",
        "a/../../x",
        "a/..",
        "run_1/../run_2/x",
        "/etc/passwd",
        "/",
    ],
)
def test_path_for_refuses_keys_outside_the_root(
    store: LocalArtifactStore, key: str
) -> None:
    """Empty, absolute and climbing keys are UnsafeArtifactPath, a ValueError."""
    with pytest.raises(UnsafeArtifactPath) as caught:
        store.path_for(key)

    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, TraceLoomError)


@pytest.mark.parametrize(
    ("key", "relative"),
    [
        ("run_1/shard-0/trace.zip", "run_1/shard-0/trace.zip"),
        ("./run_1/x.png", "run_1/x.png"),
        ("run_1//x.png", "run_1/x.png"),
        ("run_1/a..b.png", "run_1/a..b.png"),
        ("run_1/Grüße ✓.png", "run_1/Grüße ✓.png"),
    ],
)
def test_path_for_maps_a_safe_key_below_the_root(
    store: LocalArtifactStore, key: str, relative: str
) -> None:
    """A relative key without '..' names a file below the root."""
    path = store.path_for(key)

    assert path == store.root / relative
    assert path.is_relative_to(store.root)


def test_unpack_tar_takes_regular_files_and_returns_their_keys(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    """Files (and the folders they sit in) land below the prefix, as keys."""
    archive = tmp_path / "results.tar"
    with tarfile.open(archive, "w") as tar:
        add_entry(tar, "test-results", tarfile.DIRTYPE)
        add_file(tar, "test-results/checkout/trace.zip", b"zip")
        add_file(tar, "./test-results/checkout/test-failed-1.png", b"png")
        add_file(tar, "a..b.txt", b"dots")

    keys = store.unpack_tar(archive, PREFIX)

    assert keys == [
        f"{PREFIX}/a..b.txt",
        f"{PREFIX}/test-results/checkout/test-failed-1.png",
        f"{PREFIX}/test-results/checkout/trace.zip",
    ]
    assert store.path_for(keys[2]).read_bytes() == b"zip"
    assert all(store.exists(key) for key in keys)


def test_unpack_tar_skips_links_devices_and_escaping_entries(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    """Symlinks, hard links, devices, absolute and '..' entries are not taken."""
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = tmp_path / "hostile.tar"
    with tarfile.open(archive, "w") as tar:
        add_file(tar, "ok.txt", b"fine")
        add_entry(tar, "link-out", tarfile.SYMTYPE, "/etc/passwd")
        add_entry(tar, "link-up", tarfile.SYMTYPE, "../../outside")
        add_entry(tar, "hard-out", tarfile.LNKTYPE, "/etc/passwd")
        add_entry(tar, "hard-in", tarfile.LNKTYPE, "ok.txt")
        add_entry(tar, "tty", tarfile.CHRTYPE)
        add_entry(tar, "pipe", tarfile.FIFOTYPE)
        add_file(tar, "/abs.txt", b"absolute")
        add_file(tar, "../escape.txt", b"up one")
        add_file(tar, "deep/../../escape2.txt", b"up via a folder")
        add_file(tar, "link-up/planted.txt", b"through a link")

    keys = store.unpack_tar(archive, PREFIX)

    assert keys == [f"{PREFIX}/link-up/planted.txt", f"{PREFIX}/ok.txt"]
    assert files_below(store.path_for(PREFIX)) == ["link-up/planted.txt", "ok.txt"]
    assert not store.path_for(f"{PREFIX}/link-up").is_symlink()
    assert list(outside.iterdir()) == []
    assert not (store.root / "run_1" / "escape.txt").exists()
    assert not (store.root / "escape2.txt").exists()
    assert not (tmp_path / "abs.txt").exists()


def test_unpack_tar_refuses_an_unsafe_prefix(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    """The prefix is checked like any key before anything is written."""
    archive = tmp_path / "results.tar"
    with tarfile.open(archive, "w") as tar:
        add_file(tar, "ok.txt")

    with pytest.raises(UnsafeArtifactPath):
        store.unpack_tar(archive, "../elsewhere")

    assert not (tmp_path / "elsewhere").exists()


def test_unpack_tar_lists_each_stored_key_once(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    """A file name repeated in the archive is one stored key, the last copy."""
    archive = tmp_path / "results.tar"
    with tarfile.open(archive, "w") as tar:
        add_file(tar, "trace.zip", b"first")
        add_file(tar, "trace.zip", b"second")

    keys = store.unpack_tar(archive, PREFIX)

    assert keys == [f"{PREFIX}/trace.zip"]
    assert store.path_for(keys[0]).read_bytes() == b"second"


def test_delete_prefix_removes_only_that_prefix(store: LocalArtifactStore) -> None:
    """Deleting one run's artifacts leaves another run's alone."""
    for key in ("run_1/a.txt", "run_1/b/c.txt", "run_2/a.txt"):
        path = store.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x", encoding="utf-8")

    store.delete_prefix("run_1")

    assert files_below(store.root) == ["run_2/a.txt"]
