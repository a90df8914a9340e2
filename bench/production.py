"""The production profile's services for a benchmark: PostgreSQL and Kafka from the project's
service scripts, a fresh migrated database and fresh topics per measurement, and the
``IMGPROC_*`` environment that runs ``imgproc relay`` and ``imgproc worker`` on them.

Blobs stay in a local folder (``IMGPROC_STORAGE=local``): the scenario measures the workers,
not a storage service.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sqlalchemy import make_url
from sqlalchemy.pool import NullPool

from bench.inputs import ROOT
from bench.machine import Unavailable
from bench.processes import child_environment
from imgproc_core.adapters.kafka import ensure_topics
from imgproc_core.adapters.sqlalchemy import create_engine_from_url
from imgproc_core.adapters.sqlalchemy.schema import upgrade
from imgproc_core.settings import Settings

SERVICES: Final = ROOT / "scripts" / "services"
#: Databases and topics of the benchmark start with these, so a leftover one is easy to spot.
DATABASE_PREFIX: Final = "imgproc_bench_"
TOPIC_PREFIX: Final = "imgproc-bench-"


def _service(script: str, command: str) -> str:
    try:
        done = subprocess.run(
            [str(SERVICES / script), command],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{script} {command} could not run: {exc}") from exc
    if done.returncode != 0:
        raise Unavailable(f"{script} {command} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout.strip()


@dataclass(frozen=True)
class Services:
    postgres_url: str
    kafka_bootstrap: str


def services() -> Services:
    """PostgreSQL and Kafka, started by their scripts when they are not running yet (and left
    running: other work may use them)."""
    _service("postgres.sh", "start")
    _service("kafka.sh", "start")
    return Services(_service("postgres.sh", "url"), _service("kafka.sh", "bootstrap"))


@dataclass(frozen=True)
class Stack:
    """One measurement's database, topics and blob folder, and the settings choosing them."""

    settings: Settings
    folder: Path

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """A child's environment: the settings as ``IMGPROC_*`` variables, no others."""
        env = {
            name: value
            for name, value in child_environment().items()
            if not name.startswith("IMGPROC_")
        }
        s = self.settings
        env.update(
            {
                "IMGPROC_ENVIRONMENT": s.environment,
                "IMGPROC_DATABASE_URL": s.database_url,
                "IMGPROC_STORAGE": s.storage,
                "IMGPROC_STORAGE_DIR": s.storage_dir,
                "IMGPROC_QUEUE": s.queue,
                "IMGPROC_JWT_SECRET": s.jwt_secret,
                "IMGPROC_KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
                "IMGPROC_KAFKA_TOPIC": s.kafka_topic,
                "IMGPROC_KAFKA_DEAD_LETTER_TOPIC": s.kafka_dead_letter_topic,
                "IMGPROC_KAFKA_GROUP": s.kafka_group,
                "IMGPROC_KAFKA_PARTITIONS": str(s.kafka_partitions),
                # Several workers run on this one host; nothing scrapes them.
                "IMGPROC_WORKER_METRICS_PORT": "0",
                "IMGPROC_RELAY_METRICS_PORT": "0",
            }
        )
        env.update(extra or {})
        return env


@contextmanager
def _fresh_database(server_url: str) -> Iterator[str]:
    name = f"{DATABASE_PREFIX}{uuid.uuid4().hex[:16]}"
    admin = create_engine_from_url(
        server_url, isolation_level="AUTOCOMMIT", pool_pre_ping=False, poolclass=NullPool
    )
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@contextmanager
def _fresh_topics(bootstrap: str, partitions: int) -> Iterator[tuple[str, str, str]]:
    from kafka import KafkaAdminClient

    suffix = uuid.uuid4().hex[:12]
    topic, dead, group = (f"{TOPIC_PREFIX}{kind}-{suffix}" for kind in ("jobs", "dead", "group"))
    ensure_topics(bootstrap, topic, dead, partitions)
    try:
        yield topic, dead, group
    finally:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            admin.delete_topics([topic, dead], raise_errors=False)
        finally:
            admin.close()


@contextmanager
def fresh_stack(found: Services, partitions: int) -> Iterator[Stack]:
    """A migrated database, topics of ``partitions`` partitions and a blob folder, all new and
    all removed afterwards."""
    with ExitStack() as stack:
        folder = Path(tempfile.mkdtemp(prefix="imgproc-bench-"))
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        database_url = stack.enter_context(_fresh_database(found.postgres_url))
        upgrade(database_url)
        topic, dead, group = stack.enter_context(_fresh_topics(found.kafka_bootstrap, partitions))
        (folder / "blobs").mkdir()
        settings = Settings(
            environment="production",
            database_url=database_url,
            storage="local",
            storage_dir=str(folder / "blobs"),
            queue="kafka",
            jwt_secret=secrets.token_urlsafe(48),
            bcrypt_rounds=4,
            worker_threads=0,
            worker_processes=1,
            kafka_bootstrap_servers=found.kafka_bootstrap,
            kafka_topic=topic,
            kafka_dead_letter_topic=dead,
            kafka_group=group,
            kafka_partitions=partitions,
        )
        yield Stack(settings, folder)


def imgproc_command(*args: str) -> list[str]:
    """``imgproc ARGS`` from this environment."""
    script = Path(sys.executable).parent / "imgproc"
    if script.is_file():
        return [str(script), *args]
    return [sys.executable, "-c", "from imgproc_cli.app import main; main()", *args]
