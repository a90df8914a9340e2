"""imgproc's Kafka shell: the worker that renders jobs from a consumer group, and the relay
that moves jobs from the outbox table to the topic.

Both are configured by ``IMGPROC_*`` environment variables only; run them as
``imgproc worker`` / ``imgproc relay``, or ``python -m imgproc_worker [worker|relay]``.
"""

from imgproc_worker.consumer import ConsumerOptions, Worker
from imgproc_worker.handling import Delivery, MessageHandler
from imgproc_worker.ledger import OffsetLedger
from imgproc_worker.relay import RelayLoop
from imgproc_worker.runtime import run_relay, run_worker, serve, stop_on_signals

__all__ = [
    "ConsumerOptions",
    "Delivery",
    "MessageHandler",
    "OffsetLedger",
    "RelayLoop",
    "Worker",
    "run_relay",
    "run_worker",
    "serve",
    "stop_on_signals",
]
