"""``traceloom serve`` with an unusable on-prem inventory: the reason, no start."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from controlplane.cli import EXIT_RUN_ERRORED, main


def test_a_bad_inventory_stops_serve_with_every_flaw(tmp_path: Path) -> None:
    """The operator sees each wrong field by its place, and exit status 2."""
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "hosts:\n  - name: rack-01\n    address: 10.0.0.1\n    port: 0\n"
        "    host_key: not-a-key\n"
    )

    result = CliRunner().invoke(
        main,
        ["serve", "--port", "0", "--data-dir", str(tmp_path / "data")],
        env={"TRACELOOM_FLEET": "static", "TRACELOOM_INVENTORY": str(inventory)},
    )

    assert result.exit_code == EXIT_RUN_ERRORED
    assert "hosts[0].port: must be between 1 and 65535" in result.output
    assert "hosts[0].host_key: not an OpenSSH public key" in result.output
    assert "hosts[0].key: is required" in result.output
    assert "Traceback" not in result.output


def test_the_static_fleet_needs_an_inventory(tmp_path: Path) -> None:
    """Without TRACELOOM_INVENTORY the static fleet says what is missing."""
    result = CliRunner().invoke(
        main,
        ["serve", "--port", "0", "--data-dir", str(tmp_path / "data")],
        env={"TRACELOOM_FLEET": "static", "TRACELOOM_INVENTORY": ""},
    )

    assert result.exit_code == EXIT_RUN_ERRORED
    assert "needs an inventory file (TRACELOOM_INVENTORY)" in result.output
