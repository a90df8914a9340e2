"""Kafka adapters (the ``kafka`` extra, kafka-python): the relay's publisher, the dead-letter
publisher and the topics. The messages that travel on them are the ports' own
(:mod:`imgproc_core.ports.messages`): these adapters only move their bytes."""

from imgproc_core.adapters.kafka.errors import DEPENDENCY, translated_errors
from imgproc_core.adapters.kafka.producer import (
    KafkaDeadLetterPublisher,
    KafkaJobPublisher,
    ProducerTimeouts,
)
from imgproc_core.adapters.kafka.topics import ensure_topics

# Kept here for the consumer until it takes the setting's own (``Settings.kafka_bootstrap_list``).
from imgproc_core.settings import bootstrap_list

__all__ = [
    "DEPENDENCY",
    "KafkaDeadLetterPublisher",
    "KafkaJobPublisher",
    "ProducerTimeouts",
    "bootstrap_list",
    "ensure_topics",
    "translated_errors",
]
