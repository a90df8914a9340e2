"""Publishing to Kafka: the relay's :class:`KafkaJobPublisher` and the worker's
:class:`KafkaDeadLetterPublisher`, on kafka-python's ``KafkaProducer``."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Final

from kafka import KafkaProducer

from imgproc_core.adapters.kafka.errors import translated_errors
from imgproc_core.domain.jobs import TransformJob
from imgproc_core.ports.messages import (
    DeadLetter,
    dead_letter_key,
    encode_dead_letter,
    encode_job,
    job_key,
)
from imgproc_core.settings import bootstrap_list

__all__ = ["KafkaDeadLetterPublisher", "KafkaJobPublisher", "ProducerTimeouts"]

logger = logging.getLogger(__name__)

#: How long records wait for more to share their request: a batch of the relay goes out in a
#: few requests instead of one per job, for a few milliseconds of latency.
LINGER_MS: Final = 5


@dataclass(frozen=True, slots=True)
class ProducerTimeouts:
    """Bounds on how long publishing may block, so that a broker that does not answer becomes
    an error the caller can retry instead of a hang."""

    #: Reaching the cluster (bootstrap) and learning a topic's partitions.
    connect_seconds: float = 10.0
    #: From handing a message over to its acknowledgement by every in-sync replica.
    delivery_seconds: float = 15.0


class _Producer:
    """One ``KafkaProducer``, created on first use and created again after a failure.

    Creating it contacts the cluster, so an unreachable broker is an error of the first send
    rather than of the constructor, and nothing connects until something is published. After
    any failure the producer is closed and the next send starts a new one: an idempotent
    producer can be left in a state where it refuses every send, and a new one is the cure.
    """

    def __init__(self, bootstrap_servers: str, client_id: str, timeouts: ProducerTimeouts) -> None:
        self._servers = bootstrap_list(bootstrap_servers)
        self._client_id = client_id
        self._timeouts = timeouts
        self._lock = threading.Lock()
        self._producer: Any = None
        self._closed = False

    def get(self) -> Any:
        with self._lock:
            if self._closed:
                raise RuntimeError("the Kafka producer is closed")
            if self._producer is None:
                self._producer = self._create()
            return self._producer

    def _create(self) -> Any:
        connect_ms = int(self._timeouts.connect_seconds * 1000)
        delivery_ms = int(self._timeouts.delivery_seconds * 1000)
        with translated_errors("connecting a producer"):
            return KafkaProducer(
                bootstrap_servers=self._servers,
                client_id=self._client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=LINGER_MS,
                delivery_timeout_ms=delivery_ms,
                request_timeout_ms=max(1000, delivery_ms // 2),
                max_block_ms=connect_ms,
                bootstrap_timeout_ms=connect_ms,
                reconnect_backoff_max_ms=2000,
                allow_auto_create_topics=False,
            )

    def discard(self, producer: Any) -> None:
        """Close ``producer`` after a failure, unless another thread replaced it already."""
        with self._lock:
            if self._producer is not producer:
                return
            self._producer = None
        try:
            producer.close(timeout=0)
        except Exception:
            logger.debug("closing a failed Kafka producer failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
            self._closed = True
        if producer is None:
            return
        try:
            producer.close(timeout=self._timeouts.delivery_seconds)
        except Exception:
            # Closing happens on the way out; what is unsent was not acknowledged either, so
            # its outbox rows or consumer offsets stay for the next run.
            logger.warning("closing the Kafka producer failed", exc_info=True)


class KafkaJobPublisher:
    """:class:`~imgproc_core.ports.JobPublisher` on a Kafka topic.

    Each job is a :class:`~imgproc_core.ports.messages.TransformRequested` message keyed
    by its source image id, so the jobs of one image land in one partition, in order. The
    producer waits for every in-sync replica (``acks="all"``) and is idempotent, so its own
    retries add no duplicates; :meth:`flush` returns once every message published since the
    last one is stored, or raises ``DependencyUnavailable`` within the delivery timeout.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        client_id: str = "imgproc-relay",
        timeouts: ProducerTimeouts | None = None,
    ) -> None:
        self._topic = topic
        self._timeouts = timeouts or ProducerTimeouts()
        self._producer = _Producer(bootstrap_servers, client_id, self._timeouts)
        self._lock = threading.Lock()
        self._in_flight: list[Any] = []

    @property
    def topic(self) -> str:
        return self._topic

    def publish(self, job: TransformJob) -> None:
        producer = None
        try:
            producer = self._producer.get()
            with translated_errors(f"publishing job {job.id}"):
                future = producer.send(self._topic, key=job_key(job), value=encode_job(job))
        except Exception:
            self._forget_in_flight(producer)
            raise
        with self._lock:
            self._in_flight.append(future)

    def flush(self) -> None:
        with self._lock:
            futures, self._in_flight = self._in_flight, []
        if not futures:
            return
        producer = self._producer.get()
        try:
            with translated_errors(f"flushing {len(futures)} messages"):
                producer.flush(timeout=self._timeouts.delivery_seconds + 5.0)
                for future in futures:
                    # Done after the flush: get() only reports how each ended.
                    future.get(timeout=1.0)
        except Exception:
            self._producer.discard(producer)
            raise

    def close(self) -> None:
        self._producer.close()

    def _forget_in_flight(self, producer: Any) -> None:
        with self._lock:
            self._in_flight = []
        if producer is not None:
            self._producer.discard(producer)


class KafkaDeadLetterPublisher:
    """:class:`~imgproc_core.ports.DeadLetterPublisher` on the dead-letter topic: one
    :class:`DeadLetter` a message, keyed by :func:`dead_letter_key` (the job's image id when
    the message could be read). :meth:`publish` returns once every in-sync replica has stored
    the letter. Thread-safe: the worker's threads share it."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        client_id: str = "imgproc-worker-dead-letters",
        timeouts: ProducerTimeouts | None = None,
    ) -> None:
        self._topic = topic
        self._timeouts = timeouts or ProducerTimeouts()
        self._producer = _Producer(bootstrap_servers, client_id, self._timeouts)

    @property
    def topic(self) -> str:
        return self._topic

    def publish(self, letter: DeadLetter) -> None:
        key = dead_letter_key(letter)
        producer = self._producer.get()
        try:
            with translated_errors("publishing a dead letter"):
                future = producer.send(self._topic, key=key, value=encode_dead_letter(letter))
                future.get(timeout=self._timeouts.delivery_seconds + 5.0)
        except Exception:
            self._producer.discard(producer)
            raise

    def close(self) -> None:
        self._producer.close()
