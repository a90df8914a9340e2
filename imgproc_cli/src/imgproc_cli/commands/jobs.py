"""``imgproc jobs list|dead|retry``: the transform jobs, as the derived images they render."""

from __future__ import annotations

from typing import Annotated

import typer

from imgproc_cli.errors import EXIT_USAGE, fail
from imgproc_cli.rendering import (
    examples,
    image_document,
    moment,
    page_document,
    plain,
    print_json,
    print_page,
    stdout,
    table,
)
from imgproc_cli.runtime import load_settings, service_container
from imgproc_core.domain.images import Image, Page
from imgproc_core.domain.jobs import JobStatus
from imgproc_core.use_cases import ListJobsQuery, RetryFailedJobsCommand, RetryJobCommand

app = typer.Typer(
    name="jobs",
    help=(
        "Transform jobs: list them, show the failed ones, queue them again. A job's id is the "
        "id of the derived image it renders."
    ),
    no_args_is_help=True,
)

PageNumber = Annotated[int, typer.Option("--page", min=1, help="Page to show, from 1")]
Limit = Annotated[int, typer.Option(min=1, max=1000, help="Jobs per page")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def _show(found: Page[Image], json: bool) -> None:
    if json:
        print_json(page_document(found, [image_document(image) for image in found.items]))
        return
    jobs = table("id", "user", "source", "status", "attempts", "updated (UTC)", "reason")
    for image in found.items:
        jobs.add_row(
            image.id,
            image.user_id,
            image.source_id or "",
            image.status.value,
            str(image.attempts),
            moment(image.updated_at),
            plain(image.failure_reason or ""),
        )
    print_page(found, jobs, "jobs")


@app.command(
    "list",
    epilog=examples(
        "imgproc jobs list", "imgproc jobs list --status PENDING", "imgproc jobs list --json"
    ),
)
def list_jobs(
    status: Annotated[
        JobStatus | None, typer.Option(case_sensitive=False, help="Only the jobs in this status")
    ] = None,
    page: PageNumber = 1,
    limit: Limit = 100,
    json: Json = False,
) -> None:
    """List jobs, oldest first, with their status and attempts (and, for the failed ones, why
    they failed)."""
    settings = load_settings()
    with service_container(settings) as container:
        found = container.list_jobs()(ListJobsQuery(status=status, page=page, limit=limit))
    _show(found, json)


@app.command(epilog=examples("imgproc jobs dead", "imgproc jobs dead --json"))
def dead(page: PageNumber = 1, limit: Limit = 100, json: Json = False) -> None:
    """List the parked jobs: those that FAILED for good, with the reason each failed.

    A job is parked when its source is corrupt or unreadable, or after it failed on each of
    its attempts (time limit, a crashed render process). In the production profile the
    dead-letter topic (IMGPROC_KAFKA_DEAD_LETTER_TOPIC) holds the same jobs as messages; this
    list reads the database, whichever the profile. Fix the cause, then `imgproc jobs retry`.
    """
    settings = load_settings()
    with service_container(settings) as container:
        found = container.list_jobs()(
            ListJobsQuery(status=JobStatus.FAILED, page=page, limit=limit)
        )
    _show(found, json)


@app.command(
    epilog=examples(
        "imgproc jobs retry 3f2a9c0d4b5e6f708192a3b4c5d6e7f8", "imgproc jobs retry --all-failed"
    )
)
def retry(
    job_id: Annotated[str | None, typer.Argument(help="The job to retry")] = None,
    all_failed: Annotated[
        bool, typer.Option("--all-failed", help="Retry every FAILED job instead of one")
    ] = False,
) -> None:
    """Queue FAILED jobs again: each goes back to PENDING and into the queue (the outbox in
    the production profile) in one transaction, with all its attempts ahead of it.

    The embedded profile's workers (`imgproc serve`) pick it up; in the production profile
    `imgproc relay` publishes it to the job topic for `imgproc worker`.
    """
    if (job_id is None) == (not all_failed):
        fail("give either a job id or --all-failed", EXIT_USAGE)
    settings = load_settings()
    with service_container(settings) as container:
        if job_id is not None:
            image = container.retry_job()(RetryJobCommand(job_id))
            stdout().print(f"job {image.id} is {image.status.value} again")
            return
        retried = container.retry_failed_jobs()(RetryFailedJobsCommand())
    stdout().print(f"{len(retried)} failed jobs are PENDING again")
