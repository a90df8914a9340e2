"""The operator's commands on the embedded profile: users, images, jobs, stats, and their exit
statuses. What a command changes is checked through the service itself: its API, its
database and its files."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgproc_core.domain.jobs import JobStatus
from imgproc_core.domain.transformations import Resize, Transformation
from imgproc_core.settings import Settings
from imgproc_core.use_cases.admin import TOKENS_REFUSED_WITHIN_SECONDS
from tests.support.cli import Cli, ServiceSide, embedded_settings, environment_for

PASSWORD = "correct horse battery"
SMALL = Transformation(resize=Resize(width=32))


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def log_in_status(service: ServiceSide, username: str, password: str = PASSWORD) -> int:
    with service.http() as client:
        response = client.post("/api/v1/login", json={"username": username, "password": password})
    return response.status_code


# -- users ---------------------------------------------------------------------------------------


def test_a_user_created_on_the_command_line_logs_in_through_the_api(
    cli: Cli, service: ServiceSide
) -> None:
    result = cli("users", "create", "Alice", "--password-stdin", stdin=f"{PASSWORD}\n")

    assert "created user alice" in result.stdout
    with service.http() as client:
        response = client.post("/api/v1/login", json={"username": "alice", "password": PASSWORD})
        assert response.status_code == 200, response.text
        assert response.json()["access_token"]
        assert response.json()["user"]["username"] == "alice"
        wrong = client.post("/api/v1/login", json={"username": "alice", "password": "not it!!"})
        assert wrong.status_code == 401


def test_the_password_is_asked_for_twice_and_never_shown(cli: Cli, service: ServiceSide) -> None:
    result = cli("users", "create", "bob", stdin=f"{PASSWORD}\n{PASSWORD}\n")

    assert PASSWORD not in result.output
    assert "created user bob" in result.stdout
    assert log_in_status(service, "bob") == 200


def test_two_passwords_that_differ_create_nothing(cli: Cli, service: ServiceSide) -> None:
    # A mismatch asks again; with no more input the command gives up.
    cli("users", "create", "bob", stdin=f"{PASSWORD}\nsomething else\n", expect=1)

    assert cli.json("users", "list")["total"] == 0


def test_create_refuses_with_a_status_for_each_reason(cli: Cli) -> None:
    cli.create_user("alice", PASSWORD)

    taken = cli("users", "create", "ALICE", "--password-stdin", stdin=f"{PASSWORD}\n", expect=4)
    short = cli("users", "create", "bob", "--password-stdin", stdin="short\n", expect=2)
    empty = cli("users", "create", "bob", "--password-stdin", stdin="", expect=2)
    bad_name = cli("users", "create", "b", "--password-stdin", stdin=f"{PASSWORD}\n", expect=2)

    assert "imgproc: the username 'alice' is taken" in taken.stderr
    assert "at least 8 characters" in short.stderr
    assert "no password on standard input" in empty.stderr
    assert "3 to 32 characters" in bad_name.stderr
    assert [user["username"] for user in cli.json("users", "list")["items"]] == ["alice"]


def test_users_are_listed_and_a_disabled_user_cannot_log_in(cli: Cli, service: ServiceSide) -> None:
    cli.create_user("alice", PASSWORD)
    cli.create_user("bob", PASSWORD)
    with service.http() as client:
        token = client.post(
            "/api/v1/login", json={"username": "alice", "password": PASSWORD}
        ).json()["access_token"]

    listed = cli.json("users", "list")
    table = cli("users", "list").stdout
    disabled = cli("users", "disable", "alice")

    assert [(user["username"], user["disabled"]) for user in listed["items"]] == [
        ("alice", False),
        ("bob", False),
    ]
    assert listed["total"] == 2
    assert "password" not in str(listed)
    assert "alice" in table
    assert "1-2 of 2 users" in table
    assert "user alice is disabled" in disabled.stdout
    assert f"refused within {TOKENS_REFUSED_WITHIN_SECONDS} seconds" in disabled.stdout
    after = cli.json("users", "list")
    assert [user["disabled"] for user in after["items"]] == [True, False]
    assert "disabled" in cli("users", "list").stdout
    assert log_in_status(service, "alice") == 401
    assert log_in_status(service, "bob") == 200
    with service.http() as client:
        # A token issued before the account was disabled, and not checked since, is refused
        # at once (one checked in the last seconds may be taken as good a little longer).
        images = client.get("/api/v1/images", headers={"Authorization": f"Bearer {token}"})
    assert images.status_code == 401
    assert "no user 'nobody'" in cli("users", "disable", "nobody", expect=3).stderr


# -- images --------------------------------------------------------------------------------------


def test_a_users_images_are_listed(cli: Cli, service: ServiceSide, corpus_dir: Path) -> None:
    cli.create_user("alice", PASSWORD)
    cli.create_user("bob", PASSWORD)
    alice, bob = service.user_id("alice", PASSWORD), service.user_id("bob", PASSWORD)
    hopper = service.upload(alice, corpus_dir / "pillow" / "hopper.png")
    flower = service.upload(alice, corpus_dir / "pillow" / "flower.jpg")
    derived = service.request(hopper, SMALL)
    service.upload(bob, corpus_dir / "pillow" / "hopper.jpg")

    listed = cli.json("images", "list", "--user", "alice")
    second_page = cli.json("images", "list", "-u", "alice", "--page", "2", "--limit", "2")
    table = cli("images", "list", "--user", "alice").stdout

    assert listed["total"] == 3
    assert {item["id"] for item in listed["items"]} == {hopper.id, flower.id, derived.id}
    assert {item["user_id"] for item in listed["items"]} == {alice}
    by_id = {item["id"]: item for item in listed["items"]}
    assert by_id[flower.id]["filename"] == "flower.jpg"
    assert (by_id[flower.id]["width"], by_id[flower.id]["height"]) == (480, 360)
    assert by_id[derived.id]["source_id"] == hopper.id
    assert by_id[derived.id]["status"] == "PENDING"
    assert len(second_page["items"]) == 1
    assert second_page["total"] == 3
    assert "flower.jpg" in table
    assert f"derived from {hopper.id}" in table
    assert cli.json("images", "list", "--user", "bob")["total"] == 1
    cli("images", "list", "--user", "nobody", expect=3)


def test_a_purge_removes_the_users_rows_and_files(
    cli: Cli, service: ServiceSide, corpus_dir: Path
) -> None:
    cli.create_user("alice", PASSWORD)
    cli.create_user("bob", PASSWORD)
    alice, bob = service.user_id("alice", PASSWORD), service.user_id("bob", PASSWORD)
    originals = [
        service.upload(alice, corpus_dir / "pillow" / name) for name in ("hopper.png", "hopper.gif")
    ]
    derived = service.request(originals[0], SMALL)
    assert service.run_jobs() == 1
    bobs = service.upload(bob, corpus_dir / "pillow" / "hopper.jpg")
    alices_files = files_under(service.storage_dir / alice)
    assert len(alices_files) == 3

    declined = cli("images", "purge", "--user", "alice", stdin="n\n", expect=1)
    assert "Delete all 3 images of alice" in declined.stdout
    assert all(path.exists() for path in alices_files)

    purged = cli("images", "purge", "--user", "alice", "--yes")

    assert "2 originals and 1 derived images" in purged.stdout
    assert cli.json("images", "list", "--user", "alice")["total"] == 0
    assert all(service.image(image.id) is None for image in [*originals, derived])
    assert files_under(service.storage_dir / alice) == []
    assert service.blob_path(bobs).is_file()
    assert cli.json("images", "list", "--user", "bob")["total"] == 1
    # The account stays; purging again finds nothing.
    assert log_in_status(service, "alice") == 200
    assert "0 originals and 0 derived" in cli("images", "purge", "-u", "alice", "-y").stdout


# -- jobs ----------------------------------------------------------------------------------------


def test_a_failed_job_is_shown_retried_and_then_rendered(
    cli: Cli, service: ServiceSide, corpus_dir: Path
) -> None:
    cli.create_user("alice", PASSWORD)
    source = service.upload(
        service.user_id("alice", PASSWORD), corpus_dir / "pillow" / "flower.jpg"
    )
    derived = service.request(source, SMALL)
    blob = service.blob_path(source)
    good = blob.read_bytes()
    blob.write_bytes(good[: len(good) // 2])
    assert service.run_jobs() == 1
    assert service.status(derived.id) is JobStatus.FAILED

    dead = cli.json("jobs", "dead")
    dead_table = cli("jobs", "dead").stdout
    failed = cli.json("jobs", "list", "--status", "FAILED")

    assert [item["id"] for item in dead["items"]] == [derived.id]
    assert dead["items"][0]["failure_reason"].startswith("corrupt_image")
    assert dead["items"][0]["source_id"] == source.id
    assert "corrupt_image" in dead_table
    assert derived.id in dead_table
    assert failed["items"] == dead["items"]
    assert cli.json("jobs", "list")["total"] == 1
    assert service.queued() == 0

    retried = cli("jobs", "retry", derived.id)

    assert f"job {derived.id} is PENDING again" in retried.stdout
    assert service.status(derived.id) is JobStatus.PENDING
    assert service.queued() == 1
    assert cli.json("jobs", "dead")["total"] == 0
    assert [item["id"] for item in cli.json("jobs", "list", "--status", "pending")["items"]] == [
        derived.id
    ]

    blob.write_bytes(good)
    assert service.run_jobs() == 1

    rendered = service.image(derived.id)
    assert rendered is not None
    assert rendered.status is JobStatus.READY
    assert rendered.width == 32
    assert service.blob_path(rendered).is_file()
    assert service.queued() == 0
    assert cli.json("jobs", "list", "--status", "READY")["total"] == 1
    assert "only a FAILED job" in cli("jobs", "retry", derived.id, expect=4).stderr


def test_retry_names_one_job_or_asks_for_all(cli: Cli) -> None:
    assert "no job" in cli("jobs", "retry", "0" * 32, expect=3).stderr
    assert "either a job id or --all-failed" in cli("jobs", "retry", expect=2).stderr
    cli("jobs", "retry", "0" * 32, "--all-failed", expect=2)
    cli("jobs", "list", "--status", "LOST", expect=2)


def test_every_failed_job_is_retried_at_once(
    cli: Cli, service: ServiceSide, corpus_dir: Path
) -> None:
    cli.create_user("alice", PASSWORD)
    alice = service.user_id("alice", PASSWORD)
    sources = [service.upload(alice, corpus_dir / "pillow" / "hopper.png") for _ in range(2)]
    derived = [service.request(source, SMALL) for source in sources]
    for source in sources:
        service.blob_path(source).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert service.run_jobs() == 2
    assert [service.status(image.id) for image in derived] == [JobStatus.FAILED] * 2

    result = cli("jobs", "retry", "--all-failed")

    assert "2 failed jobs are PENDING again" in result.stdout
    assert [service.status(image.id) for image in derived] == [JobStatus.PENDING] * 2
    assert service.queued() == 2
    assert "0 failed jobs" in cli("jobs", "retry", "--all-failed").stdout


# -- stats ---------------------------------------------------------------------------------------


def test_stats_count_users_images_bytes_and_jobs(
    cli: Cli, service: ServiceSide, corpus_dir: Path
) -> None:
    assert cli.json("stats")["images"]["total"] == 0
    cli.create_user("alice", PASSWORD)
    cli.create_user("bob", PASSWORD)
    cli("users", "disable", "bob")
    alice = service.user_id("alice", PASSWORD)
    paths = [corpus_dir / "pillow" / name for name in ("hopper.png", "flower.jpg")]
    hopper, flower = (service.upload(alice, path) for path in paths)
    ready = service.request(hopper, SMALL)
    assert service.run_jobs() == 1
    failing = service.request(flower, SMALL)
    good = service.blob_path(flower).read_bytes()
    service.blob_path(flower).write_bytes(good[:100])
    assert service.run_jobs() == 1
    service.request(hopper, Transformation(resize=Resize(width=16)))
    rendered = service.image(ready.id)
    assert rendered is not None
    assert service.status(failing.id) is JobStatus.FAILED

    stats = cli.json("stats")
    table = cli("stats").stdout

    original_bytes = sum(path.stat().st_size for path in paths)
    assert stats == {
        "users": {"total": 2, "disabled": 1},
        "images": {"total": 5, "originals": 2, "derived": 3},
        "bytes": {
            "total": original_bytes + rendered.size_bytes,
            "originals": original_bytes,
            "derived": rendered.size_bytes,
        },
        "jobs": {"PENDING": 1, "PROCESSING": 0, "READY": 1, "FAILED": 1},
        "queued_jobs": 1,
    }
    assert "originals" in table
    assert "2 (1 disabled)" in table


# -- what every command shares -------------------------------------------------------------------

COMMANDS = [
    ["users", "create"],
    ["users", "list"],
    ["users", "disable"],
    ["images", "list"],
    ["images", "purge"],
    ["jobs", "list"],
    ["jobs", "dead"],
    ["jobs", "retry"],
    ["stats"],
    ["transform"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_explains_itself_with_an_example(cli: Cli, command: list[str]) -> None:
    shown = cli(*command, "--help").stdout

    assert "Examples:" in shown
    assert f"imgproc {' '.join(command)}" in shown


def test_the_dead_letter_list_names_the_topic_of_the_production_profile(cli: Cli) -> None:
    assert "dead-letter topic" in cli("jobs", "dead", "--help").stdout


def test_a_database_without_its_schema_is_refused(tmp_path: Path) -> None:
    cli = Cli(environment_for(embedded_settings(tmp_path)))

    refused = cli("users", "list", expect=2)

    assert "run `imgproc db upgrade` first" in refused.stderr


def test_a_database_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    # A folder where the database file should be: SQLite cannot open it.
    taken = tmp_path / "imgproc.db"
    taken.mkdir()
    cli = Cli(environment_for(embedded_settings(tmp_path, database_url=f"sqlite:///{taken}")))

    refused = cli("stats", expect=5)

    assert "the database is unavailable" in refused.stderr


def test_a_weak_secret_is_refused_outside_tests(settings: Settings, cli: Cli) -> None:
    weak = Settings(
        **{
            **{field: getattr(settings, field) for field in settings.__struct_fields__},
            "environment": "development",
            "jwt_secret": "changeme",
        }
    )
    refused = Cli(environment_for(weak))("users", "list", expect=2)

    assert "IMGPROC_JWT_SECRET" in refused.stderr
