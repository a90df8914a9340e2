"""A relay relays the outbox within seconds of the broker's return, however long it was away,
whether it was started during the outage or was running when it began.

A relay started while the broker was down used to wait out up to 30 s more: kafka-python's
admin client backs off its reconnections up to 30 s within one attempt at the topics, and the
relay's own backoff between attempts grew to 30 s as well. Both are capped now (1 s and 2 s).
A running relay kept each batch it failed to publish leased for the whole job lease (120 s by
default: 100 s after the broker's return in the run that checked the second test against it,
1 s now); it gives them back now.

The broker is the one every test shares: this module has it to itself, and starts it again
however the test ends.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from imgproc_core.container import Container
from tests.e2e.production.deployment import (
    RunningProcess,
    ServiceScript,
    production_deployment,
    restarted_at_exit,
)
from tests.support.kafka import kafka_bootstrap
from tests.support.production import ProductionStack
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

logger = logging.getLogger(__name__)

PARTITIONS = 2
JOBS = 6
#: Long enough for both old backoffs to have reached 30 s (0.5 s doubling: 31.5 s of waits).
BROKER_AWAY_SECONDS = 40.0
#: From the broker answering again to an empty outbox: the capped backoffs (at most 2 s and
#: 1 s), the topics checked, one batch published; with room for a busy machine. The old
#: relay took up to 30 s more (16 s in the run that checked this test against it; 0.8 s now).
RESUMED_WITHIN_SECONDS = 8.0
ORIGINAL = "basn2c08.png"


def outbox_emptied(stack: ProductionStack, container: Container, relay: RunningProcess) -> bool:
    if stack.outbox_size(container) == 0:
        return True
    assert relay.running, relay.tail()
    return False


def test_a_relay_started_while_the_broker_is_down_resumes_within_seconds_of_its_return(
    tmp_path: Path, corpus_dir: Path
) -> None:
    kafka = ServiceScript("kafka")
    assert kafka_bootstrap() == kafka.run("bootstrap"), (
        "the tests' broker is not the one scripts/services/kafka.sh controls"
    )
    with (
        production_deployment(tmp_path, PARTITIONS) as (stack, deployed),
        restarted_at_exit(kafka),
    ):
        container = stack.container()
        stack.seed(
            container,
            corpus_dir / "pngsuite" / ORIGINAL,
            [{"resize": {"width": 8 + n}} for n in range(JOBS)],
        )
        assert stack.outbox_size(container) == JOBS

        kafka.stop()
        relay = deployed.start_relay()
        relay.wait_for_line(r"cannot create the topics")
        time.sleep(BROKER_AWAY_SECONDS)
        assert relay.running, relay.tail()
        assert stack.outbox_size(container) == JOBS

        kafka.start()
        back_at = time.monotonic()
        wait_until(
            lambda: outbox_emptied(stack, container, relay),
            timeout=120.0,
            interval=0.1,
            message=lambda: f"the outbox never emptied:\n{relay.tail()}",
        )
        resumed_after = time.monotonic() - back_at
        logger.info("outbox empty %.1f s after the broker was back", resumed_after)

        assert resumed_after < RESUMED_WITHIN_SECONDS, relay.tail()
        assert relay.terminate() == 0, relay.tail()


def test_a_running_relay_publishes_what_it_failed_to_within_seconds_of_the_return(
    tmp_path: Path, corpus_dir: Path
) -> None:
    kafka = ServiceScript("kafka")
    with (
        production_deployment(tmp_path, PARTITIONS) as (stack, deployed),
        restarted_at_exit(kafka),
    ):
        container = stack.container()
        relay = deployed.start_relay()
        deployed.wait_until_relaying(relay)

        kafka.stop()
        stack.seed(
            container,
            corpus_dir / "pngsuite" / ORIGINAL,
            [{"resize": {"width": 8 + n}} for n in range(JOBS)],
        )

        # A failed attempt: it claimed the batch under the default lease (120 s). The old relay
        # then found nothing more to claim, and the jobs waited out the lease.
        def failed_once() -> bool:
            if "relay failed" in relay.log():
                return True
            assert relay.running, relay.tail()
            return False

        wait_until(failed_once, timeout=120.0, interval=0.2, message=relay.tail)
        assert stack.outbox_size(container) == JOBS

        kafka.start()
        back_at = time.monotonic()
        wait_until(
            lambda: outbox_emptied(stack, container, relay),
            timeout=180.0,
            interval=0.1,
            message=lambda: f"the outbox never emptied:\n{relay.tail()}",
        )
        resumed_after = time.monotonic() - back_at
        logger.info("outbox empty %.1f s after the broker was back", resumed_after)

        assert resumed_after < RESUMED_WITHIN_SECONDS, relay.tail()
        assert relay.terminate() == 0, relay.tail()
