"""Splitting spec files over hosts so that every host has about equal work.

Greedy longest-first: files sorted by expected cost, heaviest first, each
going to the host with the least work so far. With no history the cost of a
file is its size in bytes, a rough stand-in for how many tests it holds.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence


def split(
    files: list[str],
    hosts: int,
    cost: Mapping[str, float],
    *,
    busy_s: Sequence[float] | None = None,
) -> list[list[str]]:
    """Partition ``files`` into at most ``hosts`` non-empty groups.

    Each group keeps the discovery (byte-wise) order of its files, and the
    result is deterministic for the same input. ``busy_s`` gives each host's
    work before its group (a host that first lists the suite's tests starts
    late): it counts in the balance, and the result then has exactly one
    group per host, in that order, empty for a host busy for long enough.
    """
    if hosts < 1:
        raise ValueError("hosts must be at least 1")
    if busy_s is not None and len(busy_s) != hosts:
        raise ValueError("busy_s needs one value per host")
    count = hosts if busy_s is not None else min(hosts, len(files))
    if not files:
        return [[] for _ in range(count)] if busy_s is not None else []
    order = {f: i for i, f in enumerate(files)}
    heaviest_first = sorted(files, key=lambda f: (-cost.get(f, 1.0), order[f]))
    # Ties on load go to the host holding fewer files, so that files of
    # cost 0 (empty files) still give every host one file.
    busy = busy_s if busy_s is not None else [0.0] * count
    loads = [(max(busy[i], 0.0), 0, i) for i in range(count)]
    heapq.heapify(loads)
    groups: list[list[str]] = [[] for _ in range(count)]
    for name in heaviest_first:
        load, held, index = heapq.heappop(loads)
        groups[index].append(name)
        weight = max(cost.get(name, 1.0), 0.0)
        heapq.heappush(loads, (load + weight, held + 1, index))
    return [sorted(g, key=order.__getitem__) for g in groups]
