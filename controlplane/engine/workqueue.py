"""The work of a run, handed to hosts as they become free.

Each spec file (or, for a rerun, each file's chosen tests) is one item with
an expected cost in host-seconds. A host's first batch comes from a
longest-first plan over all hosts; the smallest items are held back in a
pool, and a host that finishes early takes the next batch from it, so no
host idles while work waits. Every batch costs one more Playwright start
(browser, ``webServer``, ``globalSetup``), so the pool is only as large as
that start cost allows, and a batch taken from it is never smaller than
about two starts' worth of work.

The queue is plain in-memory logic; it holds no host and does no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import attrs

from controlplane.engine import plan

# Share of the expected work kept back for the dynamic tail: small when the
# estimates come from history, larger when they are guesses.
TAIL_SHARE_KNOWN = 0.10
TAIL_SHARE_UNKNOWN = 0.30


@attrs.frozen(kw_only=True)
class WorkItem:
    """One file's tests: ``selectors`` are what Playwright is given."""

    file: str
    selectors: tuple[str, ...]
    cost_s: float
    known: bool = True
    # How many times this item was put back after its host was lost.
    retries: int = 0


def _order(item: WorkItem) -> tuple[float, bytes]:
    return (-item.cost_s, item.file.encode())


class WorkQueue:
    """First batches for ``hosts`` hosts, then a pool shared by all of them."""

    def __init__(
        self,
        items: Iterable[WorkItem],
        *,
        hosts: int,
        start_cost_s: float,
        busy_s: Sequence[float] | None = None,
    ) -> None:
        """``busy_s``: each host's expected work before its first batch."""
        if hosts < 1:
            raise ValueError("hosts must be at least 1")
        self.hosts = hosts
        self.start_cost_s = max(start_cost_s, 0.0)
        self.busy_s = busy_s
        ordered = sorted(items, key=_order)
        self._pool: list[WorkItem] = []
        self._first = self._plan(ordered)

    @property
    def pending(self) -> int:
        return len(self._pool)

    @property
    def pending_cost_s(self) -> float:
        return sum(i.cost_s for i in self._pool)

    def first_batches(self) -> list[list[WorkItem]]:
        """One list per host (possibly empty), each in discovery order."""
        return [list(batch) for batch in self._first]

    def _tail_share(self, ordered: Sequence[WorkItem]) -> float:
        total = sum(i.cost_s for i in ordered) or 1.0
        unknown = sum(i.cost_s for i in ordered if not i.known) / total
        share = TAIL_SHARE_KNOWN + (TAIL_SHARE_UNKNOWN - TAIL_SHARE_KNOWN) * unknown
        # A tail that cannot pay for one extra start per host is not worth it.
        if share * total < self.hosts * 2 * self.start_cost_s or self.hosts == 1:
            return 0.0
        return share

    def _plan(self, ordered: list[WorkItem]) -> list[list[WorkItem]]:
        total = sum(i.cost_s for i in ordered)
        budget = self._tail_share(ordered) * total
        head = list(ordered)
        # Hold back the smallest items, but leave every host at least one.
        while head and len(head) > self.hosts and head[-1].cost_s <= budget:
            budget -= head[-1].cost_s
            self._pool.append(head.pop())
        self._pool.sort(key=_order)
        by_file = {item.file: item for item in head}
        names = sorted(by_file, key=str.encode)
        cost = {name: item.cost_s for name, item in by_file.items()}
        groups = plan.split(names, self.hosts, cost, busy_s=self.busy_s)
        if self.busy_s is not None:
            # A busy host whose share would not pay for its Playwright start
            # gets no first batch; it takes from the pool when it is free.
            busy = list(self.busy_s)
            for host, group in enumerate(groups):
                worth = sum(cost[name] for name in group)
                if busy[host] > 0 and 0 < worth < 2 * self.start_cost_s:
                    busy[host] = math.inf
            if busy != list(self.busy_s) and not all(map(math.isinf, busy)):
                groups = plan.split(names, self.hosts, cost, busy_s=busy)
        groups += [[] for _ in range(self.hosts - len(groups))]
        return [[by_file[name] for name in group] for group in groups]

    def next_batch(self, busy_hosts: int) -> list[WorkItem]:
        """Items for a host that just became free; [] when the pool is empty.

        Guided self-scheduling: a share of what is left, so early batches are
        large and the last ones small, but never below two starts' worth.
        """
        if not self._pool:
            return []
        sharers = max(busy_hosts + 1, 1)
        target = max(self.pending_cost_s / sharers, 2 * self.start_cost_s)
        batch: list[WorkItem] = []
        taken = 0.0
        while self._pool and (not batch or taken < target):
            item = self._pool.pop(0)
            batch.append(item)
            taken += item.cost_s
        return sorted(batch, key=lambda i: i.file.encode())

    def keep_only(self, files: Iterable[str]) -> list[WorkItem]:
        """Drop pooled items of other files; return what was dropped."""
        keep = set(files)
        dropped = [i for i in self._pool if i.file not in keep]
        self._pool = [i for i in self._pool if i.file in keep]
        return dropped

    def take_all(self) -> list[WorkItem]:
        """Empty the pool (work no host will run)."""
        taken, self._pool = self._pool, []
        return taken

    def add(self, items: Iterable[WorkItem]) -> None:
        """Queue items as they are (work taken up again after a restart)."""
        self._pool.extend(items)
        self._pool.sort(key=_order)

    def put_back(self, items: Iterable[WorkItem]) -> None:
        """Return a lost host's unfinished items, to be run once more."""
        for item in items:
            self._pool.append(attrs.evolve(item, retries=item.retries + 1))
        self._pool.sort(key=_order)
