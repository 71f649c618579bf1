"""The work queue: first batches, the dynamic tail and put-back work."""

from __future__ import annotations

import random

import pytest

from controlplane.engine.workqueue import WorkItem, WorkQueue


def _items(*costs: float, known: bool = True) -> list[WorkItem]:
    return [
        WorkItem(
            file=f"f{i:02d}.spec.ts",
            selectors=(f"f{i:02d}.spec.ts",),
            cost_s=c,
            known=known,
        )
        for i, c in enumerate(costs)
    ]


def _drain(queue: WorkQueue) -> list[WorkItem]:
    taken = []
    while batch := queue.next_batch(0):
        taken.extend(batch)
    return taken


def test_every_item_is_handed_out_exactly_once() -> None:
    """First batches plus everything the pool gives: each file once."""
    items = _items(*[random.Random(1).uniform(0.1, 5) for _ in range(40)])  # noqa: S311
    queue = WorkQueue(items, hosts=4, start_cost_s=0.1)

    handed = [i.file for b in queue.first_batches() for i in b] + [
        i.file for i in _drain(queue)
    ]

    assert sorted(handed) == sorted(i.file for i in items)
    assert len(handed) == len(set(handed))


def test_one_host_gets_everything_at_once() -> None:
    """With one host a second Playwright start buys nothing: no pool."""
    queue = WorkQueue(_items(5, 1, 1, 1), hosts=1, start_cost_s=0.5)

    assert [len(b) for b in queue.first_batches()] == [4]
    assert queue.pending == 0


def test_costly_start_means_no_pool() -> None:
    """When the tail cannot pay for a start per host, everything is planned."""
    queue = WorkQueue(_items(3, 2, 1, 1, 0.5, 0.5), hosts=2, start_cost_s=10)

    assert queue.pending == 0
    assert sum(len(b) for b in queue.first_batches()) == 6


def test_smallest_files_are_held_back_for_the_tail() -> None:
    """The pool holds the smallest items; the plan keeps the long ones."""
    queue = WorkQueue(
        _items(10, 9, 8, 7, 0.3, 0.2, 0.2, 0.1), hosts=2, start_cost_s=0.01
    )
    pooled = _drain(queue)

    assert pooled
    assert max(i.cost_s for i in pooled) <= 0.3
    planned = [i.cost_s for b in queue.first_batches() for i in b]
    assert {10, 9, 8, 7} <= set(planned)


def test_unknown_costs_keep_a_larger_tail() -> None:
    """Guesses are less trusted than history: more is left for the tail."""
    costs = [1.0] * 40
    known = WorkQueue(_items(*costs), hosts=4, start_cost_s=0.05)
    guessed = WorkQueue(_items(*costs, known=False), hosts=4, start_cost_s=0.05)

    assert guessed.pending > known.pending > 0


def test_first_batches_balance_longest_first() -> None:
    """Costs 8, 4, 4 over two hosts plan as [8] and [4, 4]."""
    queue = WorkQueue(_items(8, 4, 4), hosts=2, start_cost_s=100)

    loads = sorted(sum(i.cost_s for i in b) for b in queue.first_batches())

    assert loads == [8, 8]


@pytest.mark.parametrize("hosts", [3, 5])
def test_more_hosts_than_files_leaves_some_hosts_empty(hosts: int) -> None:
    """Hosts beyond the files get empty first batches, never a shared file."""
    queue = WorkQueue(_items(1, 1), hosts=hosts, start_cost_s=0)

    batches = queue.first_batches()

    assert len(batches) == hosts
    assert sorted(len(b) for b in batches) == [0] * (hosts - 2) + [1, 1]


def test_next_batch_is_at_least_two_starts_of_work() -> None:
    """A batch from the pool is not smaller than about two starts' worth."""
    queue = WorkQueue(_items(*([5.0] * 4 + [0.1] * 30)), hosts=4, start_cost_s=0.25)

    batch = queue.next_batch(3)

    assert sum(i.cost_s for i in batch) >= 0.5 or queue.pending == 0


def test_batches_shrink_as_the_pool_empties() -> None:
    """Guided self-scheduling: early batches larger than late ones."""
    queue = WorkQueue(_items(*([5.0] * 4 + [0.2] * 60)), hosts=4, start_cost_s=0.01)

    sizes = []
    while batch := queue.next_batch(3):
        sizes.append(len(batch))

    assert sizes[0] > sizes[-1]


def test_put_back_items_are_marked_as_retried() -> None:
    """A lost host's work comes back once, counted, to be run again."""
    queue = WorkQueue(_items(1, 1), hosts=2, start_cost_s=0)
    lost = queue.first_batches()[0]

    queue.put_back(lost)
    again = queue.next_batch(0)

    assert [i.file for i in again] == [i.file for i in lost]
    assert [i.retries for i in again] == [1]


def test_take_all_empties_the_pool() -> None:
    """What no host will run can be taken out in one go."""
    queue = WorkQueue(_items(*([1.0] * 20)), hosts=2, start_cost_s=0.01)
    pending = queue.pending

    taken = queue.take_all()

    assert len(taken) == pending > 0
    assert queue.pending == 0


def test_hosts_must_be_positive() -> None:
    """Zero hosts is a programming error."""
    with pytest.raises(ValueError, match="at least 1"):
        WorkQueue(_items(1), hosts=0, start_cost_s=0)


def test_a_host_that_lists_first_gets_a_smaller_first_batch() -> None:
    """busy_s: the listing host's first batch is short by the listing's time."""
    queue = WorkQueue(
        _items(4, 4, 2, 2, 2, 2), hosts=2, start_cost_s=2, busy_s=[4.0, 0.0]
    )

    first, second = queue.first_batches()

    assert sum(i.cost_s for i in first) == 6
    assert sum(i.cost_s for i in second) == 10


def test_keep_only_drops_pooled_items_of_other_files() -> None:
    """After the listing, the pool holds only files it kept; the rest is returned."""
    queue = WorkQueue(_items(*[1.0] * 12), hosts=2, start_cost_s=0.01)
    pooled = {i.file for i in queue.take_all()}
    queue.add(_items(*[1.0] * 12)[:4])

    dropped = queue.keep_only(["f00.spec.ts", "f02.spec.ts"])

    assert pooled
    assert sorted(i.file for i in dropped) == ["f01.spec.ts", "f03.spec.ts"]
    assert sorted(i.file for i in _drain(queue)) == ["f00.spec.ts", "f02.spec.ts"]


def test_a_busy_host_whose_share_cannot_pay_its_start_gets_no_first_batch() -> None:
    """Its small share goes to the others rather than cost one more start."""
    cheap = WorkQueue(_items(3, 3, 1), hosts=3, start_cost_s=0.1, busy_s=[2, 0, 0])
    costly = WorkQueue(_items(3, 3, 1), hosts=3, start_cost_s=2, busy_s=[2, 0, 0])

    [cheap_first, *_] = cheap.first_batches()
    first, *others = costly.first_batches()

    assert [i.cost_s for i in cheap_first] == [1]
    assert first == []
    assert sorted(i.cost_s for b in others for i in b) == [1, 3, 3]
