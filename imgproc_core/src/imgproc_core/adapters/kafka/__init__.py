"""Kafka adapters (the ``kafka`` extra, kafka-python): the relay's publisher, the dead-letter
publisher, the topics, and the messages that travel on them."""

from imgproc_core.adapters.kafka.errors import DEPENDENCY, translated_errors
from imgproc_core.adapters.kafka.messages import (
    DEAD_LETTER_TAG,
    JOB_TAG,
    DeadLetter,
    DeadLetterCode,
    MalformedMessage,
    TransformRequested,
    decode_dead_letter,
    decode_job,
    encode_dead_letter,
    encode_job,
    job_key,
)
from imgproc_core.adapters.kafka.producer import (
    KafkaDeadLetterPublisher,
    KafkaJobPublisher,
    ProducerTimeouts,
    bootstrap_list,
)
from imgproc_core.adapters.kafka.topics import ensure_topics

__all__ = [
    "DEAD_LETTER_TAG",
    "DEPENDENCY",
    "JOB_TAG",
    "DeadLetter",
    "DeadLetterCode",
    "KafkaDeadLetterPublisher",
    "KafkaJobPublisher",
    "MalformedMessage",
    "ProducerTimeouts",
    "TransformRequested",
    "bootstrap_list",
    "decode_dead_letter",
    "decode_job",
    "encode_dead_letter",
    "encode_job",
    "ensure_topics",
    "job_key",
    "translated_errors",
]
