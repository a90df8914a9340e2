"""The operator's commands on PostgreSQL: each test gets a new database, migrated with
``imgproc db upgrade`` as an operator would, and checks what the commands change through the
service's own container and API on the same database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imgproc_core.adapters.sqlalchemy.schema import head
from imgproc_core.domain.jobs import JobStatus
from imgproc_core.domain.transformations import Resize, Transformation
from imgproc_core.settings import Settings
from tests.support.cli import Cli, ServiceSide, embedded_settings, environment_for

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
SMALL = Transformation(resize=Resize(width=32))


@pytest.fixture
def settings(postgres_database_url: str, tmp_path: Path) -> Settings:
    return embedded_settings(tmp_path, database_url=postgres_database_url)


@pytest.fixture
def cli(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    command_line = Cli(environment_for(settings))
    assert "run `imgproc db upgrade` first" in command_line("users", "list", expect=2).stderr
    command_line("db", "upgrade")
    assert command_line("db", "current").stdout.strip() == head()
    return command_line


@pytest.fixture
def service(settings: Settings, cli: Cli) -> Iterator[ServiceSide]:
    side = ServiceSide(settings)
    yield side
    side.close()


def log_in_status(service: ServiceSide, username: str) -> int:
    with service.http() as client:
        response = client.post("/api/v1/login", json={"username": username, "password": PASSWORD})
    return response.status_code


def test_users_are_created_listed_and_disabled(cli: Cli, service: ServiceSide) -> None:
    cli.create_user("Alice", PASSWORD)
    cli("users", "create", "bob", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    cli("users", "create", "alice", "--password-stdin", stdin=f"{PASSWORD}\n", expect=4)

    assert log_in_status(service, "alice") == 200
    cli("users", "disable", "bob")

    listed = cli.json("users", "list")
    assert [(user["username"], user["disabled"]) for user in listed["items"]] == [
        ("alice", False),
        ("bob", True),
    ]
    assert log_in_status(service, "bob") == 401
    cli("users", "disable", "carol", expect=3)
    assert cli.json("stats")["users"] == {"total": 2, "disabled": 1}


def test_a_failed_job_is_retried_alone_or_with_every_other(
    cli: Cli, service: ServiceSide, corpus_dir: Path
) -> None:
    cli.create_user("alice", PASSWORD)
    alice = service.user_id("alice", PASSWORD)
    sources = [
        service.upload(alice, corpus_dir / "pillow" / name) for name in ("hopper.png", "hopper.jpg")
    ]
    derived = [service.request(source, SMALL) for source in sources]
    good = [service.blob_path(source).read_bytes() for source in sources]
    for source, data in zip(sources, good, strict=True):
        service.blob_path(source).write_bytes(data[: len(data) // 2])
    assert service.run_jobs() == 2

    dead = cli.json("jobs", "dead")
    assert {item["id"] for item in dead["items"]} == {image.id for image in derived}
    assert all(item["failure_reason"].startswith("corrupt_image") for item in dead["items"])

    cli("jobs", "retry", derived[0].id)
    assert service.status(derived[0].id) is JobStatus.PENDING
    assert service.queued() == 1
    assert "1 failed jobs are PENDING again" in cli("jobs", "retry", "--all-failed").stdout
    assert service.queued() == 2
    cli("jobs", "retry", derived[0].id, expect=4)

    for source, data in zip(sources, good, strict=True):
        service.blob_path(source).write_bytes(data)
    assert service.run_jobs() == 2
    assert [service.status(image.id) for image in derived] == [JobStatus.READY] * 2
    assert cli.json("jobs", "list", "--status", "READY")["total"] == 2
    assert cli.json("jobs", "dead")["total"] == 0


def test_images_are_listed_counted_and_purged(
    cli: Cli, service: ServiceSide, corpus_dir: Path
) -> None:
    cli.create_user("alice", PASSWORD)
    cli.create_user("bob", PASSWORD)
    alice, bob = service.user_id("alice", PASSWORD), service.user_id("bob", PASSWORD)
    paths = [corpus_dir / "pillow" / name for name in ("flower.jpg", "hopper.webp")]
    originals = [service.upload(alice, path) for path in paths]
    service.request(originals[0], SMALL)
    assert service.run_jobs() == 1
    bobs = service.upload(bob, corpus_dir / "pillow" / "hopper.png")

    assert cli.json("images", "list", "--user", "alice")["total"] == 3
    stats = cli.json("stats")
    assert stats["images"] == {"total": 4, "originals": 3, "derived": 1}
    assert stats["bytes"]["originals"] == sum(path.stat().st_size for path in paths) + (
        bobs.size_bytes
    )
    assert stats["jobs"]["READY"] == 1

    purged = cli("images", "purge", "--user", "alice", "--yes")

    assert "2 originals and 1 derived images" in purged.stdout
    assert cli.json("images", "list", "--user", "alice")["total"] == 0
    assert not any(path.is_file() for path in (service.storage_dir / alice).rglob("*"))
    assert service.blob_path(bobs).is_file()
    assert cli.json("stats")["images"] == {"total": 1, "originals": 1, "derived": 0}
