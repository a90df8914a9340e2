"""The watchdog that notices a worker the consumer group has left behind."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import pytest
from kafka.errors import KafkaConnectionError

from imgproc_worker.consumer import BrokerGroups, Membership, NotAMember

GROUP = "imgproc-workers"
#: Checks on every call: the interval has always passed.
EVERY_TIME = 1e-9


@dataclass
class Metadata:
    member_id: str


class Consumer:
    def __init__(self, member_id: str) -> None:
        self.member_id = member_id

    def group_metadata(self) -> Metadata:
        return Metadata(self.member_id)


class Broker:
    """Answers DescribeGroups with whatever the test sets."""

    def __init__(self, state: str, members: set[str]) -> None:
        self.state = state
        self.members = members
        self.down = False
        self.asked = 0

    def describe(self, group: str) -> tuple[str, frozenset[str]]:
        assert group == GROUP
        self.asked += 1
        if self.down:
            raise KafkaConnectionError("the broker is down")
        return self.state, frozenset(self.members)


def test_a_member_of_its_stable_group_goes_on() -> None:
    broker = Broker("Stable", {"me", "other"})
    membership = Membership(GROUP, broker.describe, EVERY_TIME)

    for _ in range(5):
        membership.check(Consumer("me"))

    assert broker.asked == 5


def test_left_out_of_a_stable_group_twice_in_a_row_is_not_a_member() -> None:
    broker = Broker("Stable", {"other"})
    membership = Membership(GROUP, broker.describe, EVERY_TIME)

    membership.check(Consumer("me"))  # once may be a rebalance under way
    with pytest.raises(NotAMember, match="stable without this worker"):
        membership.check(Consumer("me"))


def test_a_consumer_that_has_no_member_id_is_not_a_member() -> None:
    broker = Broker("Stable", {"other"})
    membership = Membership(GROUP, broker.describe, EVERY_TIME)

    membership.check(Consumer(""))
    with pytest.raises(NotAMember, match="member none"):
        membership.check(Consumer(""))


def test_a_rebalance_or_a_membership_seen_again_starts_the_count_afresh() -> None:
    broker = Broker("Stable", {"other"})
    membership = Membership(GROUP, broker.describe, EVERY_TIME)
    membership.check(Consumer("me"))
    broker.state = "PreparingRebalance"
    membership.check(Consumer("me"))
    broker.state = "Stable"
    membership.check(Consumer("me"))
    broker.members = {"me", "other"}
    membership.check(Consumer("me"))
    broker.members = {"other"}

    membership.check(Consumer("me"))
    with pytest.raises(NotAMember):
        membership.check(Consumer("me"))


def test_a_broker_that_does_not_answer_is_no_evidence() -> None:
    broker = Broker("Stable", {"other"})
    broker.down = True
    membership = Membership(GROUP, broker.describe, EVERY_TIME)

    for _ in range(4):
        membership.check(Consumer("me"))

    assert broker.asked == 4


def test_the_broker_is_asked_once_per_interval_at_most() -> None:
    broker = Broker("Stable", {"other"})
    membership = Membership(GROUP, broker.describe, 3600.0)

    for _ in range(10):
        membership.check(Consumer("me"))

    assert broker.asked == 0


def test_an_interval_of_zero_turns_the_watchdog_off() -> None:
    broker = Broker("Stable", {"other"})
    membership = Membership(GROUP, broker.describe, 0)

    for _ in range(3):
        membership.check(Consumer("me"))

    assert broker.asked == 0


def test_a_broker_that_cannot_be_reached_costs_one_check_not_the_worker() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    groups = BrokerGroups(f"127.0.0.1:{closed_port}", "imgproc-test-watchdog")
    membership = Membership(GROUP, groups.describe, EVERY_TIME)

    try:
        membership.check(Consumer("me"))  # logged and taken as no evidence
        membership.check(Consumer("me"))
    finally:
        groups.close()


def test_a_consumer_still_rebalancing_in_a_stable_group_twice_in_a_row_is_replaced() -> None:
    broker = Broker("Stable", {"me", "other"})
    membership = Membership(GROUP, broker.describe, EVERY_TIME)

    membership.check(Consumer("me"), commits_refused=True)  # the rebalance may be ending
    with pytest.raises(NotAMember, match="still rebalancing"):
        membership.check(Consumer("me"), commits_refused=True)


def test_commits_refused_while_the_broker_rebalances_too_are_no_evidence() -> None:
    broker = Broker("CompletingRebalance", {"me", "other"})
    membership = Membership(GROUP, broker.describe, EVERY_TIME)

    for _ in range(4):
        membership.check(Consumer("me"), commits_refused=True)
    broker.state = "Stable"
    membership.check(Consumer("me"), commits_refused=False)
    membership.check(Consumer("me"), commits_refused=True)

    assert broker.asked == 6
