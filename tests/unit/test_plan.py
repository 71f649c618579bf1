"""Splitting spec files over hosts: a partition, balanced longest-first."""

from __future__ import annotations

import random

import pytest

from controlplane.engine.plan import split


def seeded(seed: int) -> random.Random:
    """A reproducible generator of test inputs (nothing secret, hence S311)."""
    return random.Random(seed)  # noqa: S311


def _files(count: int) -> list[str]:
    return [f"tests/f{i:03d}.spec.ts" for i in range(count)]


def _random_case(rng: random.Random) -> tuple[list[str], int, dict[str, float]]:
    files = _files(rng.randint(1, 40))
    hosts = rng.randint(1, 12)
    cost = {
        f: float(rng.choice([1, 2, 3, 5, 8, 13, 100, rng.randint(1, 5000)]))
        for f in files
    }
    return files, hosts, cost


@pytest.mark.parametrize(
    ("costs", "hosts", "expected"),
    [
        pytest.param([8, 4, 4], 2, [[0], [1, 2]], id="8-4-4-over-2"),
        pytest.param([4, 8, 4], 2, [[1], [0, 2]], id="heaviest-not-first"),
        pytest.param([1, 1, 1, 1], 2, [[0, 2], [1, 3]], id="equal-costs"),
        pytest.param([5, 4, 3, 3, 3], 2, [[0, 3], [1, 2, 4]], id="lpt-5-4-3-3-3"),
        pytest.param([1, 2, 3], 1, [[0, 1, 2]], id="one-host"),
        pytest.param([3, 1, 2], 5, [[0], [2], [1]], id="more-hosts-than-files"),
    ],
)
def test_split_balances_heaviest_first(
    costs: list[int], hosts: int, expected: list[list[int]]
) -> None:
    """Heaviest files go first, each to the least loaded host so far."""
    files = _files(len(costs))
    cost = {f: float(c) for f, c in zip(files, costs, strict=True)}

    groups = split(files, hosts, cost)

    assert groups == [[files[i] for i in group] for group in expected]


def test_split_of_no_files_is_no_groups() -> None:
    """Nothing to run gives no group at all, never an empty shard."""
    groups = split([], 3, {})

    assert groups == []


def test_split_counts_a_file_without_history_as_cost_one() -> None:
    """A file missing from the cost map weighs 1, so it still gets a place."""
    files = _files(3)

    groups = split(files, 2, {files[0]: 2.0})

    assert groups == [[files[0]], [files[1], files[2]]]


@pytest.mark.parametrize("hosts", [0, -1])
def test_split_refuses_fewer_than_one_host(hosts: int) -> None:
    """hosts < 1 is a programming error, refused with ValueError."""
    with pytest.raises(ValueError, match="hosts"):
        split(_files(2), hosts, {})


def test_split_is_a_partition_into_at_most_hosts_non_empty_groups() -> None:
    """Over random inputs every file lands in exactly one non-empty group."""
    rng = seeded(20240601)
    for _ in range(300):
        files, hosts, cost = _random_case(rng)

        groups = split(files, hosts, cost)

        flat = [f for group in groups for f in group]
        assert sorted(flat) == sorted(files)
        assert len(flat) == len(set(flat))
        assert len(groups) == min(hosts, len(files))
        assert all(groups)


def test_split_groups_keep_discovery_order() -> None:
    """Inside each group files come in the order discovery gave them."""
    rng = seeded(7)
    for _ in range(200):
        files, hosts, cost = _random_case(rng)
        position = {f: i for i, f in enumerate(files)}

        groups = split(files, hosts, cost)

        for group in groups:
            assert group == sorted(group, key=position.__getitem__)


def test_split_is_deterministic() -> None:
    """The same input always gives the same groups, whatever dict order."""
    rng = seeded(99)
    for _ in range(100):
        files, hosts, cost = _random_case(rng)
        shuffled = dict(rng.sample(list(cost.items()), len(cost)))

        first = split(files, hosts, cost)
        second = split(list(files), hosts, shuffled)

        assert first == second


def test_split_max_load_is_within_the_greedy_bound() -> None:
    """No host carries more than the average load plus the heaviest file."""
    rng = seeded(12345)
    for _ in range(500):
        files, hosts, cost = _random_case(rng)
        total = sum(cost.values())
        heaviest = max(cost.values())

        groups = split(files, hosts, cost)

        max_load = max(sum(cost[f] for f in group) for group in groups)
        assert max_load <= total / hosts + heaviest + 1e-9


@pytest.mark.parametrize(
    "costs",
    [
        pytest.param([0, 0, 0], id="all-zero"),
        pytest.param([5, 0, 0], id="zero-after-heavy"),
    ],
)
def test_split_never_leaves_a_group_empty_with_zero_costs(costs: list[int]) -> None:
    """Files of cost 0 are still spread so that no shard is empty."""
    files = _files(len(costs))
    cost = {f: float(c) for f, c in zip(files, costs, strict=True)}

    groups = split(files, 3, cost)

    assert len(groups) == 3
    assert all(groups)


@pytest.mark.parametrize(
    ("costs", "busy", "expected"),
    [
        pytest.param([4, 4, 2, 2], [0, 0], [[0, 2], [1, 3]], id="no-head-start"),
        pytest.param([4, 4, 2, 2], [3, 0], [[1], [0, 2, 3]], id="first-host-busy"),
        pytest.param([1, 1], [0, 9, 0], [[0], [], [1]], id="busy-host-gets-nothing"),
        pytest.param([], [2, 0], [[], []], id="no-files"),
    ],
)
def test_split_counts_each_hosts_earlier_work(
    costs: list[int], busy: list[float], expected: list[list[int]]
) -> None:
    """busy_s is work a host has before its group: one group per host, in order."""
    files = _files(len(costs))
    cost = {f: float(c) for f, c in zip(files, costs, strict=True)}

    groups = split(files, len(busy), cost, busy_s=busy)

    assert groups == [[files[i] for i in group] for group in expected]


def test_split_refuses_busy_times_that_do_not_match_the_hosts() -> None:
    """One busy time per host, or a ValueError."""
    with pytest.raises(ValueError, match="busy_s"):
        split(_files(2), 3, {}, busy_s=[1.0])


def test_split_with_busy_times_balances_finish_times() -> None:
    """Over random inputs, no host ends later than the even share plus a file."""
    rng = seeded(4242)
    for _ in range(200):
        files, hosts, cost = _random_case(rng)
        busy = [rng.uniform(0, 50) for _ in range(hosts)]

        groups = split(files, hosts, cost, busy_s=busy)

        ends = [b + sum(cost[f] for f in g) for b, g in zip(busy, groups, strict=True)]
        fair = (sum(cost.values()) + sum(busy)) / hosts
        assert sorted(f for g in groups for f in g) == sorted(files)
        assert max(ends) <= max(fair, max(busy)) + max(cost.values()) + 1e-9
