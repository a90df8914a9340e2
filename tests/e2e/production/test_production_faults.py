"""Faults in the production profile, on its real services and processes: a worker killed with
jobs in hand, a relay killed between publishing and acknowledging, a corrupt original, Redis
down, and two API processes counting one rate limit. Each reports what it measured in the log.

(The broker's restart and PostgreSQL's outage disturb services every other test shares: they
have modules of their own.)
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus
from imgproc_core.ports.messages import DeadLetterCode, decode_dead_letter, decode_job
from imgproc_core.use_cases import JobOutcomeStatus
from tests.e2e.conftest import Api
from tests.e2e.production.crashing_relay import DYING_LINE
from tests.e2e.production.deployment import (
    ApiProcess,
    derived_images,
    distinct_spec,
    partition_of,
    production_deployment,
    spread,
    transform_burst,
    upload_sources_on_every_partition,
    wait_until_ready_count,
    wait_until_settled,
)
from tests.support.gcs import emulator_client
from tests.support.kafka import end_offsets, read_messages, wait_until_committed
from tests.support.production import ProductionStack
from tests.support.redis import throwaway_redis

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

logger = logging.getLogger(__name__)

ORIGINALS = ("basn2c08.png", "basn0g08.png", "basn3p08.png", "basn6a08.png", "basn4a08.png")


def _originals(corpus_dir: Path) -> list[Path]:
    return [corpus_dir / "pngsuite" / name for name in ORIGINALS]


def _assert_one_object_per_derived_image(
    stack: ProductionStack, originals: set[str], images: list[Image]
) -> None:
    """Every derived image has exactly its own object, at its deterministic key."""
    blobs = stack.blob_files()
    derived = sorted(set(blobs) - originals)
    assert derived == sorted(image.storage_key for image in images)
    assert len(blobs) == len(originals) + len(images)
    for image in images:
        assert image.status is JobStatus.READY, (image.id, image.failure_reason)
        assert image.storage_key.endswith(f"/{image.id}.{image.format.replace('jpeg', 'jpg')}")


def _dead_letter_count(stack: ProductionStack) -> int:
    return sum(end_offsets(stack.topics.bootstrap, stack.topics.dead_letter_topic).values())


# -- a worker killed mid-batch -------------------------------------------------------------------

KILL_PARTITIONS = 4
KILL_JOBS = 210


def test_a_worker_killed_mid_batch_loses_no_job_and_writes_each_output_once(
    tmp_path: Path, corpus_dir: Path
) -> None:
    with production_deployment(tmp_path, KILL_PARTITIONS) as (stack, deployed):
        container = stack.container()
        api_process = deployed.start_api()
        # Slow renders, two at a time each: the victim surely holds jobs when it dies.
        victim, survivor = (
            deployed.start_worker(codec_delay_seconds=0.05, worker_processes="2") for _ in range(2)
        )
        deployed.wait_until_healthy(api_process)
        shares = deployed.wait_until_sharing([victim, survivor])

        with api_process.api() as api:
            user = api.register()
            by_partition = upload_sources_on_every_partition(
                api, user, _originals(corpus_dir), KILL_PARTITIONS
            )
        sources = spread(by_partition, KILL_JOBS)
        # Every job waits in the outbox first, so the whole batch flows once the relay starts.
        transform_burst(
            [api_process.base_url],
            user,
            [(source, distinct_spec(n)) for n, source in enumerate(sources)],
        ).entries()
        relay = deployed.start_relay()
        deployed.wait_until_relaying(relay)

        wait_until_ready_count(container, sources, KILL_JOBS // 3, watch=[victim, survivor])
        victim.kill()
        killed_at = time.monotonic()
        ready_at_kill = sum(
            image.status is JobStatus.READY for image in derived_images(container, sources)
        )
        on_victims_partitions = sum(
            partition_of(source, KILL_PARTITIONS) in shares[victim.name] for source in sources
        )
        done_by_victim = len(victim.handled())
        assert done_by_victim < on_victims_partitions, "the victim had finished its share"

        images = wait_until_settled(
            container, sources, KILL_JOBS, watch=[api_process, relay, survivor]
        )
        recovered_after = time.monotonic() - killed_at
        wait_until_committed(stack.topics.bootstrap, stack.topics.group, stack.topics.topic)
        originals = {stack.image(container, source).storage_key for source in set(sources)}

        _assert_one_object_per_derived_image(stack, originals, images)
        assert _dead_letter_count(stack) == 0
        run_twice = {job for job, _ in victim.handled()} & {job for job, _ in survivor.handled()}
        logger.info(
            "worker killed with %d of %d jobs READY (%d of its %d done); all READY %.1f s later "
            "(the group's session timeout included); jobs run by both workers: %d; outcomes: "
            "victim %s, survivor %s",
            ready_at_kill,
            KILL_JOBS,
            done_by_victim,
            on_victims_partitions,
            recovered_after,
            len(run_twice),
            victim.outcomes(),
            survivor.outcomes(),
        )
        assert ready_at_kill < KILL_JOBS
        assert survivor.outcomes()[JobOutcomeStatus.READY] > KILL_JOBS - on_victims_partitions
        for started in (api_process, relay, survivor):
            assert started.terminate() == 0, started.tail()


# -- a relay killed between publishing and acknowledging -----------------------------------------

RELAYED_JOBS = 24
#: The outbox lease: how long the crashed relay's rows wait before another relay takes them.
RELAY_LEASE_SECONDS = 3


def test_a_relay_killed_after_publishing_leads_to_one_result_per_job(
    tmp_path: Path, corpus_dir: Path
) -> None:
    with production_deployment(tmp_path, job_lease_seconds=RELAY_LEASE_SECONDS) as (
        stack,
        deployed,
    ):
        container = stack.container()
        api_process = deployed.start_api()
        worker = deployed.start_worker(worker_processes="1")
        deployed.wait_until_healthy(api_process)
        deployed.wait_until_sharing([worker])
        with api_process.api() as api:
            user = api.register()
            source = api.upload(_originals(corpus_dir)[0], user)["id"]
        sources = [source] * RELAYED_JOBS
        transform_burst(
            [api_process.base_url],
            user,
            [(source, distinct_spec(n)) for n in range(RELAYED_JOBS)],
        ).entries()
        assert stack.outbox_size(container) == RELAYED_JOBS

        crashing = deployed.start_relay("tests.e2e.production.crashing_relay")
        assert crashing.wait_for_exit() == -signal.SIGKILL, crashing.tail()
        assert DYING_LINE in crashing.log()
        crashed_at = time.monotonic()
        # The broker holds every job, and the outbox still has every row.
        assert sum(end_offsets(stack.topics.bootstrap, stack.topics.topic).values()) == (
            RELAYED_JOBS
        )
        assert stack.outbox_size(container) == RELAYED_JOBS

        relay = deployed.start_relay()
        images = wait_until_settled(
            container, sources, RELAYED_JOBS, watch=[api_process, relay, worker]
        )
        # Once the lease has run out the second relay publishes the rows again, and the worker
        # meets each job a second time.
        records = read_messages(
            stack.topics.bootstrap, stack.topics.topic, 2 * RELAYED_JOBS, settle_seconds=1.0
        )
        wait_until_committed(stack.topics.bootstrap, stack.topics.group, stack.topics.topic)
        republished_after = time.monotonic() - crashed_at

        assert Counter(Counter(decode_job(r.value).image_id for r in records).values()) == {
            2: RELAYED_JOBS
        }
        assert stack.outbox_size(container) == 0
        handled = worker.handled()
        assert Counter(Counter(job for job, _ in handled).values()) == {2: RELAYED_JOBS}
        outcomes = Counter(outcome for _, outcome in handled)
        assert outcomes[JobOutcomeStatus.READY] >= RELAYED_JOBS
        assert set(outcomes) <= {JobOutcomeStatus.READY, JobOutcomeStatus.ALREADY_READY}
        originals = {stack.image(container, source).storage_key}
        _assert_one_object_per_derived_image(stack, originals, images)
        assert _dead_letter_count(stack) == 0
        logger.info(
            "relay killed after publishing %d jobs; republished and all settled %.1f s later "
            "(lease %d s); worker outcomes %s",
            RELAYED_JOBS,
            republished_after,
            RELAY_LEASE_SECONDS,
            dict(outcomes),
        )
        for started in (api_process, relay, worker):
            assert started.terminate() == 0, started.tail()


# -- a corrupt original --------------------------------------------------------------------------

HEALTHY_JOBS = 30
#: A PNG signature and then nothing a decoder can use.
GARBAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def test_a_corrupt_source_fails_once_with_a_reason_and_the_others_go_on(
    tmp_path: Path, corpus_dir: Path
) -> None:
    with production_deployment(tmp_path, job_max_attempts=3) as (stack, deployed):
        container = stack.container()
        api_process = deployed.start_api()
        relay = deployed.start_relay()
        worker = deployed.start_worker(worker_processes="1")
        deployed.wait_until_healthy(api_process)
        deployed.wait_until_relaying(relay)
        deployed.wait_until_sharing([worker])

        with api_process.api() as api:
            user = api.register()
            broken = api.upload(_originals(corpus_dir)[0], user)["id"]
            healthy = api.upload(_originals(corpus_dir)[1], user)["id"]
            key = stack.image(container, broken).storage_key
            bucket = emulator_client(stack.settings.gcs_emulator_host).bucket(
                stack.settings.gcs_bucket
            )
            bucket.blob(key).upload_from_string(GARBAGE, content_type="image/png")

            requests = [(healthy, distinct_spec(n)) for n in range(HEALTHY_JOBS)]
            requests.insert(HEALTHY_JOBS // 2, (broken, distinct_spec(0)))
            entries = transform_burst([api_process.base_url], user, requests).entries()
            doomed = entries[HEALTHY_JOBS // 2]["id"]
            images = wait_until_settled(
                container, [broken, healthy], HEALTHY_JOBS + 1, watch=[relay, worker]
            )
            statuses = {image.id: image.status for image in images}
            assert statuses.pop(doomed) is JobStatus.FAILED
            assert set(statuses.values()) == {JobStatus.READY}

            answer = api.redirect(doomed, user)
            assert answer.status_code == 409, answer.text
            problem = answer.json()
            assert problem["code"] == "image_processing_failed"
            assert "corrupt" in problem["detail"], problem
            metadata = api.metadata(doomed, user)
            assert metadata["status"] == "FAILED"
            assert metadata["failure_reason"] in problem["detail"]

        (record,) = read_messages(
            stack.topics.bootstrap, stack.topics.dead_letter_topic, 1, settle_seconds=2.0
        )
        letter = decode_dead_letter(record.value)
        assert letter.code == DeadLetterCode.FAILED
        assert letter.job is not None
        assert letter.job.image_id == doomed
        assert letter.reason == metadata["failure_reason"]
        # Failed for good at the first attempt: no retries, and one line about it.
        assert letter.attempts == 1
        log = worker.log()
        assert [outcome for job, outcome in worker.handled() if job == doomed] == [
            JobOutcomeStatus.FAILED
        ]
        assert log.count(f"job {doomed} failed for good") == 1
        assert f"job {doomed} failed (attempt" not in log
        assert not any(blob.endswith(f"/{doomed}.png") for blob in stack.blob_files())
        logger.info(
            "corrupt source: 1 job FAILED after %d attempt(s) (%s), %d others READY, 1 dead letter",
            letter.attempts,
            letter.reason,
            HEALTHY_JOBS,
        )


# -- Redis down ----------------------------------------------------------------------------------

TRANSFORM_LIMIT = 3


def _timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def _assert_dependency_unavailable(response: httpx.Response, dependency: str) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert body["code"] == "dependency_unavailable", body
    assert dependency in body["detail"], body


def _readiness(api: Api) -> tuple[int, dict[str, Any]]:
    response = api.http.get("/readyz")
    return response.status_code, response.json()


def _transform(api: Api, user: dict[str, str], source: str, n: int) -> httpx.Response:
    return api.call("POST", f"/images/{source}/transform", json=distinct_spec(n), headers=user)


def test_with_redis_down_the_api_serves_what_needs_no_redis_and_recovers(
    tmp_path: Path, corpus_dir: Path
) -> None:
    with (
        throwaway_redis(tmp_path / "redis") as redis_server,
        production_deployment(
            tmp_path,
            redis_url=redis_server.url,
            rate_limit_transform=f"{TRANSFORM_LIMIT}/hour",
        ) as (_, deployed),
    ):
        api_process = deployed.start_api()
        deployed.wait_until_healthy(api_process)
        with api_process.api() as api:
            username = "redis-outage"
            user = api.register(username)
            source = api.upload(_originals(corpus_dir)[0], user)["id"]
            counted = _transform(api, user, source, 0)
            assert counted.status_code == 200
            assert counted.headers["ratelimit-limit"] == str(TRANSFORM_LIMIT)
            assert _readiness(api) == (
                200,
                {"status": "ready", "checks": dict.fromkeys(_CHECKS, "ok")},
            )

            redis_server.stop()
            timings: dict[str, float] = {}

            listed, timings["list"] = _timed(lambda: api.call("GET", "/images/", headers=user))
            assert listed.status_code == 200
            assert {item["id"] for item in listed.json()["items"]} >= {source}
            described, timings["metadata"] = _timed(
                lambda: api.call("GET", f"/images/{source}/metadata", headers=user)
            )
            assert described.status_code == 200
            # The URL cache is down: each download is signed afresh, and still works.
            redirect, timings["redirect"] = _timed(lambda: api.redirect(source, user))
            assert redirect.status_code == 307
            assert httpx.get(redirect.headers["location"], timeout=30).status_code == 200
            # Uploads and transforms fail open: past the limit, and without RateLimit headers.
            uploaded, timings["upload"] = _timed(
                lambda: api.call(
                    "POST",
                    "/images/",
                    files={"file": ("x.png", _originals(corpus_dir)[1].read_bytes())},
                    headers=user,
                )
            )
            assert uploaded.status_code == 201, uploaded.text
            assert "ratelimit-limit" not in uploaded.headers
            for n in range(1, TRANSFORM_LIMIT + 3):
                unlimited, timings["transform"] = _timed(
                    lambda n=n: _transform(api, user, source, n)
                )
                assert unlimited.status_code == 200, unlimited.text
                assert "ratelimit-limit" not in unlimited.headers
            # Register and log in fail closed.
            refused, timings["register"] = _timed(
                lambda: api.call(
                    "POST", "/register", json={"username": "newcomer", "password": "x" * 16}
                )
            )
            _assert_dependency_unavailable(refused, "rate limiter")
            refused, timings["login"] = _timed(
                lambda: api.call(
                    "POST",
                    "/login",
                    json={"username": username, "password": "correct horse battery"},
                )
            )
            _assert_dependency_unavailable(refused, "rate limiter")
            status, ready = _readiness(api)
            assert status == 200
            assert ready["status"] == "degraded"
            assert ready["checks"]["cache"].startswith("unavailable"), ready
            assert [name for name, outcome in ready["checks"].items() if outcome != "ok"] == [
                "cache"
            ]
            assert _unavailable_limiter_counts(api) == {
                ("auth", "refused"): 2,
                ("transform", "allowed"): TRANSFORM_LIMIT + 2,
                ("upload", "allowed"): 1,
            }
            logger.info(
                "answers with Redis down, in ms: %s",
                {name: round(seconds * 1000, 1) for name, seconds in timings.items()},
            )

            redis_server.start()
            # Nothing restarted: the very next command reconnects.
            registered, timings_back = _timed(
                lambda: api.call(
                    "POST", "/register", json={"username": "after-outage", "password": "x" * 16}
                )
            )
            assert registered.status_code == 201, registered.text
            api.login(username)
            status, ready = _readiness(api)
            assert (status, ready["status"]) == (200, "ready"), ready
            # A new Redis counts from nothing: the limit holds again, with its headers.
            answers = [_transform(api, user, source, 100 + n) for n in range(TRANSFORM_LIMIT + 1)]
            assert [answer.status_code for answer in answers] == [200] * TRANSFORM_LIMIT + [429]
            assert [answer.headers["ratelimit-remaining"] for answer in answers] == [
                *(str(left) for left in range(TRANSFORM_LIMIT - 1, -1, -1)),
                "0",
            ]
            assert int(answers[-1].headers["retry-after"]) >= 1
            logger.info(
                "with Redis back, the first register answered 201 in %.1f ms", timings_back * 1000
            )
        assert api_process.terminate() == 0, api_process.tail()


_CHECKS = ("database", "queue", "storage", "cache")


def _unavailable_limiter_counts(api: Api) -> dict[tuple[str, str], float]:
    """``imgproc_rate_limiter_unavailable_total`` by policy and outcome, from /metrics."""
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(api.http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "imgproc_rate_limiter_unavailable_total":
                counts[sample.labels["policy"], sample.labels["outcome"]] = sample.value
    return counts


# -- two API processes, one limit ----------------------------------------------------------------

SHARED_LIMIT = 20
ATTEMPTS = 60


def test_two_api_processes_let_through_exactly_the_limit_between_them(
    tmp_path: Path, corpus_dir: Path
) -> None:
    # Per hour: no hit is refilled while the burst runs, so the count is exact.
    with production_deployment(tmp_path, rate_limit_transform=f"{SHARED_LIMIT}/hour") as (
        stack,
        deployed,
    ):
        container = stack.container()
        first, second = deployed.start_api(), deployed.start_api()
        deployed.wait_until_healthy(first, second)
        with first.api() as api:
            user = api.register()
            source = api.upload(_originals(corpus_dir)[0], user)["id"]

        burst = transform_burst(
            [first.base_url, second.base_url],
            user,
            [(source, distinct_spec(n)) for n in range(ATTEMPTS)],
            threads=8,
        )

        assert burst.statuses == Counter({200: SHARED_LIMIT, 429: ATTEMPTS - SHARED_LIMIT})
        for response in burst.answers:
            assert response.headers["ratelimit-limit"] == str(SHARED_LIMIT)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
        assert len(derived_images(container, [source])) == SHARED_LIMIT
        allowed_by = Counter(
            _server_of(response, (first, second))
            for response in burst.answers
            if response.status_code == 200
        )
        logger.info(
            "%d transform requests over 2 API processes in %.2f s: %s; allowed per process %s",
            ATTEMPTS,
            burst.seconds,
            dict(burst.statuses),
            dict(allowed_by),
        )


def _server_of(response: httpx.Response, servers: tuple[ApiProcess, ...]) -> str:
    url = str(response.request.url)
    return next(server.name for server in servers if url.startswith(server.base_url))
