"""The composition root wires every use case; the test container runs the whole flow on fakes."""

from __future__ import annotations

from pathlib import Path

import pytest
from dependency_injector import providers

from imgproc_core.adapters.memory import (
    InMemoryImageCodec,
    InMemoryJobMetrics,
    ManualClock,
    fake_image_bytes,
)
from imgproc_core.container import TECHNOLOGIES, build_container, chosen_technologies
from imgproc_core.domain.jobs import JobStatus
from imgproc_core.domain.transformations import parse_transformation
from imgproc_core.settings import Settings, SettingsError
from imgproc_core.testing import TEST_SECRET, build_test_container, settings_for_tests
from imgproc_core.use_cases import (
    ImageQuery,
    JobPolicy,
    LogInCommand,
    RegisterUserCommand,
    RequestTransformCommand,
    UploadImageCommand,
)


def test_the_test_container_runs_a_whole_transformation_on_fakes() -> None:
    container = build_test_container()
    assert isinstance(container.clock(), ManualClock)
    assert isinstance(container.codec(), InMemoryImageCodec)

    session = container.register_user()(RegisterUserCommand("alice", "correct horse"))
    assert container.log_in()(LogInCommand("ALICE", "correct horse")).user.id == session.user.id
    original = container.upload_image()(
        UploadImageCommand(session.user.id, "a.png", fake_image_bytes("png", 640, 480))
    )
    derived = container.request_transform()(
        RequestTransformCommand(
            session.user.id, original.id, parse_transformation({"resize": {"width": 320}})
        )
    )
    assert derived.status is JobStatus.PENDING
    with container.unit_of_work() as uow:
        job = uow.jobs.claim("test", 60)
        uow.commit()
    assert job is not None
    assert job.id == derived.id
    outcome = container.process_transform_job()(job)
    assert outcome.image is not None
    assert (outcome.image.status, outcome.image.width, outcome.image.height) == (
        JobStatus.READY,
        320,
        240,
    )
    download = container.get_download_url()(ImageQuery(session.user.id, derived.id))
    assert download.url.startswith("memory://")
    assert download.image.id == derived.id


def test_use_cases_are_shared_and_units_of_work_are_fresh() -> None:
    container = build_test_container()
    assert container.upload_image() is container.upload_image()
    assert container.unit_of_work() is not container.unit_of_work()


def test_the_real_container_uses_the_real_adapters(tmp_path: Path) -> None:
    settings = settings_for_tests(storage="local", storage_dir=str(tmp_path / "blobs"))
    container = build_container(settings)
    assert type(container.codec()).__name__ == "PillowImageCodec"
    assert type(container.password_hasher()).__name__ == "BcryptPasswordHasher"
    assert type(container.token_issuer()).__name__ == "JwtTokenIssuer"
    assert type(container.blob_storage()).__name__ == "LocalBlobStorage"
    assert type(container.job_metrics()).__name__ == "PrometheusJobMetrics"


def _opened_by_init_resources(settings: Settings) -> set[str]:
    container = build_container(settings)
    return {
        resource.provides.__name__  # type: ignore[attr-defined]
        for resource in container.traverse(types=[providers.Resource])
    }


def test_init_resources_opens_only_what_the_settings_chose(tmp_path: Path) -> None:
    assert _opened_by_init_resources(settings_for_tests()) == set()
    embedded = settings_for_tests(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        storage="local",
        storage_dir=str(tmp_path / "blobs"),
        queue="table",
        worker_processes=2,
    )
    assert _opened_by_init_resources(embedded) == {"open_engine", "open_pool"}
    production = settings_for_tests(
        database_url="postgresql://imgproc@127.0.0.1:1/imgproc",
        storage="gcs",
        gcs_bucket="images",
        queue="kafka",
        rate_limiter="redis",
        url_cache="redis",
    )
    assert _opened_by_init_resources(production) == {
        "open_engine",
        "open_client",
        "open_job_publisher",
        "open_dead_letter_publisher",
    }


def test_the_test_container_chooses_only_in_memory_technologies() -> None:
    # The in-memory fakes need no extra beyond the container's: every module the test
    # container's choices import is this package's own or its memory module.
    chosen = chosen_technologies(settings_for_tests())
    chosen |= {"imaging": "memory", "auth": "memory", "metrics": "memory", "webhooks": "memory"}
    assert {TECHNOLOGIES[slot][choice][0] for slot, choice in chosen.items()} == {"", "memory"}


def test_one_technology_in_two_slots_is_one_container() -> None:
    container = build_test_container()
    assert container.url_caching() is container.rate_limiting()
    assert container.url_caching() is not container.database()


def test_a_slot_or_choice_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ValueError, match="no such technology slot: cache"):
        build_container(settings_for_tests(), cache="memory")
    with pytest.raises(ValueError, match="no imaging technology is called 'vips'"):
        build_container(settings_for_tests(), imaging="vips")


def test_only_the_local_folder_serves_files_of_its_own(tmp_path: Path) -> None:
    local = build_container(settings_for_tests(storage="local", storage_dir=str(tmp_path)))
    assert local.blob_files() is local.blob_storage()
    assert build_test_container().blob_files() is None


def test_a_database_in_memory_has_no_schema_to_migrate() -> None:
    schema = build_test_container().database_schema()
    assert (schema.current(), schema.expected(), schema.upgrade()) == (None, None, None)


def test_one_job_metrics_per_container() -> None:
    first, second = build_container(settings_for_tests()), build_container(settings_for_tests())
    assert first.job_metrics() is first.job_metrics()
    assert first.job_metrics() is not second.job_metrics()
    assert isinstance(build_test_container().job_metrics(), InMemoryJobMetrics)


def test_the_metrics_ports_default_apart_and_an_empty_one_is_off() -> None:
    defaults = Settings.from_env({}, env_file=None)
    assert defaults.metrics_host == "127.0.0.1"
    assert defaults.worker_metrics_port != defaults.relay_metrics_port
    assert 0 not in (defaults.worker_metrics_port, defaults.relay_metrics_port)
    off = Settings.from_env(
        {"IMGPROC_WORKER_METRICS_PORT": "", "IMGPROC_RELAY_METRICS_PORT": " "}, env_file=None
    )
    assert (off.worker_metrics_port, off.relay_metrics_port) == (0, 0)
    with pytest.raises(SettingsError, match="IMGPROC_WORKER_METRICS_PORT"):
        Settings.from_env({"IMGPROC_WORKER_METRICS_PORT": "70000"}, env_file=None)


def test_a_weak_secret_is_refused_outside_tests() -> None:
    with pytest.raises(SettingsError, match="IMGPROC_JWT_SECRET"):
        Settings(environment="production", jwt_secret="changeme").check_secrets()
    with pytest.raises(SettingsError, match="at least 32"):
        Settings(environment="development", jwt_secret="x" * 31).check_secrets()
    Settings(environment="production", jwt_secret=TEST_SECRET).check_secrets()


def test_insecure_secrets_are_never_allowed_in_production() -> None:
    with pytest.raises(SettingsError, match="IMGPROC_ALLOW_INSECURE_SECRETS"):
        Settings(
            environment="production", jwt_secret="short", allow_insecure_secrets=True
        ).check_secrets()
    Settings(
        environment="development", jwt_secret="short", allow_insecure_secrets=True
    ).check_secrets()


def test_every_worker_gets_the_one_job_policy_from_the_settings() -> None:
    container = build_test_container(
        settings_for_tests(job_max_attempts=7, job_backoff_seconds=0.5)
    )

    policy = container.run_job().policy

    assert policy == JobPolicy(max_attempts=7, backoff_seconds=0.5)
    assert container.job_policy() is policy
    # One runner for the threads of a worker; each thread's step has its own worker id.
    first = container.run_next_job(worker_id="w1")
    assert container.run_next_job(worker_id="w2") is not first
    assert container.run_job() is container.run_job()


def test_the_link_signing_secret_follows_the_other_secrets_rules() -> None:
    with pytest.raises(SettingsError, match="IMGPROC_LINK_SIGNING_SECRET"):
        Settings(
            environment="production", jwt_secret=TEST_SECRET, link_signing_secret="short"
        ).check_secrets()
    Settings(environment="production", jwt_secret=TEST_SECRET).check_secrets()


def test_links_are_signed_with_a_key_of_their_own() -> None:
    from imgproc_core.container import link_signing_key
    from imgproc_core.container.local import url_signing_key

    derived = settings_for_tests()
    assert link_signing_key(derived) != url_signing_key(derived)
    assert link_signing_key(derived) != TEST_SECRET.encode()
    own = settings_for_tests(link_signing_secret="l" * 40)
    assert link_signing_key(own) == b"l" * 40
