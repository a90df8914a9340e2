"""Creating the job topic and its dead-letter topic: the broker creates no topic on its own."""

from __future__ import annotations

import logging
from typing import Any, Final

from kafka import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError, for_code

from imgproc_core.adapters.kafka.errors import translated_errors
from imgproc_core.settings import bootstrap_list

__all__ = ["ensure_topics"]

logger = logging.getLogger(__name__)

DEAD_LETTER_RETENTION_MS: Final = 30 * 24 * 3600 * 1000
#: The longest pause between two attempts to reach the cluster. kafka-python's default (30 s,
#: reached after five refused connections) made a relay started while the broker was down
#: notice its return up to half a minute late.
RECONNECT_BACKOFF_MAX_MS: Final = 1000


def ensure_topics(
    bootstrap_servers: str,
    topic: str,
    dead_letter_topic: str,
    partitions: int,
    *,
    replication_factor: int | None = None,
    timeout_seconds: float = 30.0,
) -> list[str]:
    """Create ``topic`` with ``partitions`` partitions, and ``dead_letter_topic`` with one,
    unless they exist; wait until both have a leader for every partition. Returns the topics
    this call created.

    ``replication_factor`` None takes the cluster's ``default.replication.factor``, so a
    production cluster (3, with ``min.insync.replicas`` 2) and a one-broker development one
    both get what they are configured for. Dead letters are kept for 30 days.

    An existing topic is left exactly as it is, partition count included: partitions can only
    be added, and adding them moves keys to other partitions, which is an operator's decision.
    ``DependencyUnavailable`` when the cluster does not answer or refuses.
    """
    if partitions < 1 or (replication_factor is not None and replication_factor < 1):
        raise ValueError("a topic needs at least one partition and one replica")
    timeout_ms = int(timeout_seconds * 1000)
    # -1 asks the broker for its default.
    replicas = -1 if replication_factor is None else replication_factor
    wanted: dict[str, dict[str, Any]] = {
        topic: {"num_partitions": partitions, "replication_factor": replicas},
        # Dead letters are rare and read in order by people: one partition is enough.
        dead_letter_topic: {
            "num_partitions": 1,
            "replication_factor": replicas,
            "configs": {"retention.ms": str(DEAD_LETTER_RETENTION_MS)},
        },
    }
    with translated_errors("creating the topics"):
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_list(bootstrap_servers),
            client_id="imgproc-admin",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
        )
        try:
            answer: dict[str, Any] = admin.create_topics(
                wanted, timeout_ms=timeout_ms, raise_errors=False
            )
            created = []
            for entry in answer["topics"]:
                error = for_code(entry["error_code"])
                if entry["error_code"] == 0:
                    created.append(entry["name"])
                elif error is not TopicAlreadyExistsError:
                    raise error(f"{entry['name']}: {entry.get('error_message')}")
            admin.wait_for_topics(list(wanted), timeout_ms=timeout_ms)
        finally:
            admin.close()
    for name in created:
        logger.info("created Kafka topic %s", name)
    return created
