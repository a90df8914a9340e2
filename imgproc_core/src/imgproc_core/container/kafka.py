"""Apache Kafka's composition root (the production profile's job path): the relay's publisher,
the dead-letter publisher, and the topics. Needs the ``kafka`` extra."""

from __future__ import annotations

from collections.abc import Iterator

from dependency_injector import containers, providers

from imgproc_core.adapters.kafka import KafkaDeadLetterPublisher, KafkaJobPublisher, ensure_topics
from imgproc_core.ports import Clock
from imgproc_core.settings import Settings


def open_job_publisher(settings: Settings) -> Iterator[KafkaJobPublisher]:
    # The producer connects on its first publish, so only the relay ever talks to the broker
    # through it.
    publisher = KafkaJobPublisher(settings.kafka_bootstrap_servers, settings.kafka_topic)
    try:
        yield publisher
    finally:
        publisher.close()


def open_dead_letter_publisher(settings: Settings) -> Iterator[KafkaDeadLetterPublisher]:
    publisher = KafkaDeadLetterPublisher(
        settings.kafka_bootstrap_servers, settings.kafka_dead_letter_topic
    )
    try:
        yield publisher
    finally:
        publisher.close()


def ensure_job_topics(settings: Settings) -> list[str]:
    return ensure_topics(
        settings.kafka_bootstrap_servers,
        settings.kafka_topic,
        settings.kafka_dead_letter_topic,
        settings.kafka_partitions,
    )


class KafkaMessaging(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    job_publisher = providers.Resource(open_job_publisher, settings)
    dead_letter_publisher = providers.Resource(open_dead_letter_publisher, settings)
    #: ``container.ensure_topics()`` creates the job topic and its dead-letter topic unless
    #: they exist (the topics it created); ``DependencyUnavailable`` when the broker is down.
    ensure_topics = providers.Callable(ensure_job_topics, settings)
