"""Links in a checkout may not lead out of it: the control plane reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.engine.source import check_links
from controlplane.errors import SourceError


def test_a_link_out_of_the_checkout_is_refused(tmp_path: Path) -> None:
    """package.json -> /etc/passwd would make the control plane read its files."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "inside.ts").write_text("x")
    (tmp_path / "ok.ts").symlink_to("tests/inside.ts")
    (tmp_path / "package.json").symlink_to("/etc/passwd")

    with pytest.raises(SourceError, match=r"package.json is a link out"):
        check_links(tmp_path)


def test_links_inside_the_checkout_are_fine(tmp_path: Path) -> None:
    """A monorepo's links between its own folders are left alone."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.ts").write_text("x")
    (tmp_path / "b").symlink_to("a")
    (tmp_path / "c.ts").symlink_to(tmp_path / "a" / "x.ts")

    check_links(tmp_path)
