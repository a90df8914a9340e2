"""The production profile's job path for tests: PostgreSQL, Kafka and blob storage, wired through
the real container, plus the environment that starts ``imgproc worker`` / ``imgproc relay`` /
``imgproc serve`` (or ``python -m imgproc_worker``) as subprocesses on the same services.

A :class:`ProductionStack` owns a fresh migrated database, a blob folder and fresh topics; its
``settings`` choose them (``queue="kafka"``), ``container()`` builds a container on them and
``env()`` gives the same choices as ``IMGPROC_*`` variables. ``seed(...)`` stores a user, an
original and derived images whose jobs wait in the outbox, as ``POST /images/{id}/transform``
would leave them.

``production_stack(..., gcs=True)`` keeps the blobs in a fresh bucket of the storage emulator
instead of a folder (removed with everything in it afterwards), and ``redis=True`` puts the rate
limits and the URL cache in the test Redis (or in the one named by a ``redis_url`` override).
The container has no setting for a Redis key prefix, so tests on the shared Redis keep apart by
their users, whose ids are new in every database.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

from imgproc_core.adapters.sqlalchemy.schema import upgrade
from imgproc_core.container import Container, build_container
from imgproc_core.domain.images import Image
from imgproc_core.domain.transformations import parse_transformation
from imgproc_core.settings import Settings
from imgproc_core.use_cases import (
    RegisterUserCommand,
    RequestTransformCommand,
    UploadImageCommand,
)
from tests.support.gcs import (
    TEST_BUCKET_PREFIX,
    TEST_PROJECT,
    emulator_client,
    gcs_endpoint,
    remove_bucket,
)
from tests.support.kafka import KafkaTopics, created_topics, fresh_topics, kafka_bootstrap
from tests.support.redis import redis_server_url
from tests.support.sql import fresh_postgres_database, postgres_server_url
from tests.support.waiting import wait_until

ROOT: Final = Path(__file__).resolve().parents[2]
#: For tests only; long enough for every adapter that checks.
TEST_SECRET: Final = "kafka-test-secret-0123456789abcdef0123456789abcdef"
PASSWORD: Final = "correct horse battery"
#: How long a test waits for jobs before it fails (a deadline, not a timing assertion).
JOB_DEADLINE_SECONDS: Final = 120.0


@dataclass
class Seeded:
    """What :meth:`ProductionStack.seed` stored: the owner, the original, its derivatives."""

    user_id: str
    source: Image
    derived: list[Image] = field(default_factory=list)


@dataclass
class ProductionStack:
    settings: Settings
    topics: KafkaTopics
    storage_dir: Path
    _containers: list[Container] = field(default_factory=list)

    def container(self, **overrides: Any) -> Container:
        """A container on the stack's services (resources opened; closed with the stack)."""
        settings = msgspec.structs.replace(self.settings, **overrides)
        container = build_container(settings)
        container.init_resources()
        self._containers.append(container)
        return container

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of a subprocess on the same services: ``os.environ`` without any
        ``IMGPROC_*`` variable of its own, plus the stack's settings."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("IMGPROC_")}
        values = msgspec.structs.asdict(self.settings)
        for name in (
            "environment",
            "database_url",
            "storage",
            "storage_dir",
            "gcs_bucket",
            "gcs_project",
            "gcs_emulator_host",
            "queue",
            "rate_limiter",
            "url_cache",
            "redis_url",
            "rate_limit_upload",
            "rate_limit_transform",
            "rate_limit_auth",
            "jwt_secret",
            "bcrypt_rounds",
            "kafka_bootstrap_servers",
            "kafka_topic",
            "kafka_dead_letter_topic",
            "kafka_group",
            "kafka_partitions",
            "worker_processes",
            "worker_threads",
            "job_time_limit_seconds",
            "job_lease_seconds",
            "job_max_attempts",
            "job_backoff_seconds",
            "metrics_host",
            "worker_metrics_port",
            "relay_metrics_port",
        ):
            env[f"IMGPROC_{name.upper()}"] = str(values[name])
        env.update({f"IMGPROC_{key.upper()}": value for key, value in overrides.items()})
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return env

    def seed(
        self,
        container: Container,
        original: Path,
        transformations: list[dict[str, Any]],
        username: str | None = None,
        after_each: Callable[[], object] | None = None,
    ) -> Seeded:
        """``after_each`` runs after each transform request (to move a test's clock, say)."""
        session = container.register_user()(
            RegisterUserCommand(username or f"u{os.urandom(6).hex()}", PASSWORD)
        )
        source = container.upload_image()(
            UploadImageCommand(session.user.id, original.name, original.read_bytes())
        )
        seeded = Seeded(session.user.id, source)
        for body in transformations:
            seeded.derived.append(
                container.request_transform()(
                    RequestTransformCommand(session.user.id, source.id, parse_transformation(body))
                )
            )
            if after_each is not None:
                after_each()
        return seeded

    def image(self, container: Container, image_id: str) -> Image:
        with container.unit_of_work() as uow:
            image: Image | None = uow.images.get(image_id)
        assert image is not None, f"no image {image_id}"
        return image

    def outbox_size(self, container: Container) -> int:
        with container.unit_of_work() as uow:
            count: int = uow.jobs.pending_count()
        return count

    def wait_for(
        self,
        container: Container,
        image_ids: list[str],
        done: Callable[[Image], bool] = lambda image: image.status.value in ("READY", "FAILED"),
        deadline: float = JOB_DEADLINE_SECONDS,
    ) -> list[Image]:
        """The images once ``done`` holds for all of them; fails at the deadline."""
        images: list[Image] = []

        def all_done() -> bool:
            nonlocal images
            images = [self.image(container, image_id) for image_id in image_ids]
            return all(done(image) for image in images)

        wait_until(
            all_done,
            timeout=deadline,
            interval=0.1,
            message=lambda: f"images still {sorted({image.status.value for image in images})}",
        )
        return images

    def blob_files(self) -> list[str]:
        """Every blob key in the stack's storage (its folder, or its bucket), sorted."""
        if self.settings.storage == "gcs":
            client = emulator_client(self.settings.gcs_emulator_host)
            return sorted(blob.name for blob in client.list_blobs(self.settings.gcs_bucket))
        return sorted(
            str(path.relative_to(self.storage_dir))
            for path in self.storage_dir.rglob("*")
            if path.is_file() and not path.name.startswith(".")
        )

    def close(self) -> None:
        for container in reversed(self._containers):
            container.shutdown_resources()
        self._containers.clear()


def production_settings(
    database_url: str, storage_dir: Path, topics: KafkaTopics, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "storage": "local",
        "storage_dir": str(storage_dir),
        "queue": "kafka",
        "jwt_secret": TEST_SECRET,
        "bcrypt_rounds": 4,
        "worker_threads": 0,
        "kafka_bootstrap_servers": topics.bootstrap,
        "kafka_topic": topics.topic,
        "kafka_dead_letter_topic": topics.dead_letter_topic,
        "kafka_group": topics.group,
        "kafka_partitions": topics.partitions,
        "job_backoff_seconds": 0.1,
        # Off unless a test gives a free port: tests run side by side, workers two at a time.
        "worker_metrics_port": 0,
        "relay_metrics_port": 0,
    }
    values.update(overrides)
    return Settings(**values)


@contextmanager
def fresh_bucket() -> Iterator[dict[str, str]]:
    """A new, empty bucket of the storage emulator, removed with its objects afterwards; the
    settings that point the service at it."""
    endpoint = gcs_endpoint()
    name = f"{TEST_BUCKET_PREFIX}{uuid.uuid4().hex[:20]}"
    emulator_client(endpoint).create_bucket(name)
    try:
        yield {
            "storage": "gcs",
            "gcs_bucket": name,
            "gcs_project": TEST_PROJECT,
            "gcs_emulator_host": endpoint,
        }
    finally:
        remove_bucket(endpoint, name)


@contextmanager
def production_stack(
    tmp_path: Path,
    partitions: int = 3,
    *,
    gcs: bool = False,
    redis: bool = False,
    **overrides: Any,
) -> Iterator[ProductionStack]:
    """A fresh database (migrated), blob folder (or bucket, with ``gcs``) and topics, removed
    afterwards; with ``redis``, rate limits and the URL cache in Redis."""
    with ExitStack() as stack:
        database_url = stack.enter_context(fresh_postgres_database(postgres_server_url()))
        upgrade(database_url)
        topics = stack.enter_context(created_topics(fresh_topics(kafka_bootstrap(), partitions)))
        storage_dir = tmp_path / "blobs"
        storage_dir.mkdir()
        if gcs:
            overrides = stack.enter_context(fresh_bucket()) | overrides
        if redis:
            overrides = {
                "rate_limiter": "redis",
                "url_cache": "redis",
                "redis_url": overrides.get("redis_url") or redis_server_url(),
            } | overrides
        production = ProductionStack(
            production_settings(database_url, storage_dir, topics, **overrides), topics, storage_dir
        )
        stack.callback(production.close)
        yield production


def python_module_command(module: str, *args: str) -> list[str]:
    """Run ``module`` with this interpreter, as a subprocess."""
    return [sys.executable, "-m", module, *args]
