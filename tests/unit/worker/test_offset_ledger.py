"""Commit only what is finished: the ledger's commit point per partition."""

from __future__ import annotations

import random
import threading

from hypothesis import given
from hypothesis import strategies as st

from imgproc_worker import OffsetLedger


def ledger_with(*partitions: str) -> OffsetLedger[str]:
    ledger: OffsetLedger[str] = OffsetLedger()
    ledger.assign(partitions)
    return ledger


def test_nothing_finished_is_nothing_to_commit() -> None:
    ledger = ledger_with("p0")
    assert ledger.take("p0", 0)
    assert ledger.take("p0", 1)

    assert ledger.committable() == {}
    assert ledger.in_hand() == 2


def test_the_commit_point_stops_at_the_first_unfinished_offset() -> None:
    ledger = ledger_with("p0")
    for offset in (10, 11, 12, 13):
        assert ledger.take("p0", offset)

    ledger.finish("p0", 11)
    ledger.finish("p0", 13)
    assert ledger.committable() == {}

    ledger.finish("p0", 10)
    assert ledger.committable() == {"p0": 12}
    assert ledger.in_hand() == 1

    ledger.finish("p0", 12)
    assert ledger.committable() == {"p0": 14}
    assert ledger.in_hand() == 0


def test_gaps_between_offsets_are_stepped_over() -> None:
    ledger = ledger_with("p0")
    for offset in (3, 7, 20):
        ledger.take("p0", offset)
        ledger.finish("p0", offset)

    assert ledger.committable() == {"p0": 21}


def test_a_commit_point_is_offered_until_it_is_committed() -> None:
    ledger = ledger_with("p0", "p1")
    ledger.take("p0", 0)
    ledger.take("p1", 5)
    ledger.finish("p0", 0)
    ledger.finish("p1", 5)

    assert ledger.committable() == {"p0": 1, "p1": 6}
    # The commit failed: offered again.
    assert ledger.committable() == {"p0": 1, "p1": 6}
    ledger.committed({"p0": 1})
    assert ledger.committable() == {"p1": 6}
    ledger.committed({"p1": 6})
    assert ledger.committable() == {}


def test_partitions_are_independent() -> None:
    ledger = ledger_with("p0", "p1")
    ledger.take("p0", 0)
    ledger.take("p1", 0)
    ledger.finish("p1", 0)

    assert ledger.committable() == {"p1": 1}


def test_offsets_of_partitions_not_owned_are_refused_and_ignored() -> None:
    ledger = ledger_with("p0")

    assert not ledger.take("p9", 0)
    ledger.finish("p9", 0)
    assert ledger.committable() == {}
    assert not ledger.owns("p9")


def test_an_offset_seen_already_is_refused() -> None:
    ledger = ledger_with("p0")
    assert ledger.take("p0", 4)
    assert not ledger.take("p0", 4)
    assert not ledger.take("p0", 2)
    ledger.finish("p0", 4)
    ledger.committable()
    assert not ledger.take("p0", 4)
    assert ledger.take("p0", 5)


def test_revoking_returns_what_may_still_be_committed_and_forgets_the_rest() -> None:
    ledger = ledger_with("p0", "p1")
    for offset in (0, 1, 2):
        ledger.take("p0", offset)
    ledger.finish("p0", 0)
    ledger.finish("p0", 2)
    ledger.take("p1", 0)

    assert ledger.revoke(["p0", "p1", "never-had"]) == {"p0": 1}

    assert not ledger.owns("p0")
    assert ledger.in_hand() == 0
    # A job of a revoked partition that finishes later changes nothing.
    ledger.finish("p0", 1)
    assert ledger.committable() == {}


def test_a_partition_assigned_again_starts_afresh() -> None:
    ledger = ledger_with("p0")
    ledger.take("p0", 8)
    ledger.revoke(["p0"])
    ledger.assign(["p0"])

    # Delivered again from the committed offset, which may be lower.
    assert ledger.take("p0", 3)
    ledger.finish("p0", 3)
    assert ledger.committable() == {"p0": 4}


@given(
    count=st.integers(min_value=1, max_value=60),
    order=st.randoms(use_true_random=False),
    finished_share=st.floats(min_value=0, max_value=1),
)
def test_the_commit_point_is_one_past_the_longest_finished_prefix(
    count: int, order: random.Random, finished_share: float
) -> None:
    ledger = ledger_with("p")
    offsets = [2 * n + 1 for n in range(count)]
    for offset in offsets:
        ledger.take("p", offset)
    finished = [offset for offset in offsets if order.random() < finished_share]
    order.shuffle(finished)
    for offset in finished:
        ledger.finish("p", offset)

    done = set(finished)
    prefix = 0
    while prefix < count and offsets[prefix] in done:
        prefix += 1
    expected = {} if prefix == 0 else {"p": offsets[prefix - 1] + 1}
    assert ledger.committable() == expected
    assert ledger.in_hand() == count - len(done)


def test_threads_finishing_at_once_lose_no_offset() -> None:
    ledger = ledger_with("p")
    for offset in range(2000):
        ledger.take("p", offset)
    start = threading.Barrier(8)

    def finish(share: int) -> None:
        start.wait()
        for offset in range(share, 2000, 8):
            ledger.finish("p", offset)
            if offset % 50 == 0:
                ledger.committable()

    threads = [threading.Thread(target=finish, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert ledger.committable() == {"p": 2000}


def test_a_restarted_partition_is_read_again_from_its_first_unfinished_offset() -> None:
    ledger = ledger_with("p0")
    old = ledger.take("p0", 0)
    for offset in (1, 2, 3):
        ledger.take("p0", offset)
    ledger.finish("p0", 0)
    ledger.finish("p0", 2)

    assert ledger.restart("p0") == (1, 1)

    # The old tenure's jobs are recorded nowhere; the new one starts empty.
    assert not ledger.owns("p0", old)
    ledger.finish("p0", 1, old)
    assert ledger.committable() == {}
    assert ledger.take("p0", 1)
    assert ledger.in_hand() == 1


def test_a_restart_of_a_partition_that_took_nothing_seeks_nowhere() -> None:
    ledger = ledger_with("p0")

    assert ledger.restart("p0") == (None, None)
    assert ledger.owns("p0")


def test_a_restart_after_everything_finished_reads_on_from_the_end() -> None:
    ledger = ledger_with("p0")
    for offset in (5, 6):
        ledger.take("p0", offset)
        ledger.finish("p0", offset)

    assert ledger.restart("p0") == (7, 7)
