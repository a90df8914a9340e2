"""``imgproc stats``: what the service holds, counted now."""

from __future__ import annotations

from typing import Annotated

import typer

from imgproc_cli.rendering import examples, human_bytes, print_json, stdout, table
from imgproc_cli.runtime import load_settings, service_container
from imgproc_core.domain.jobs import JobStatus
from imgproc_core.use_cases import ServiceStats, ServiceStatsQuery

EPILOG = examples("imgproc stats", "imgproc stats --json | jq .jobs.FAILED")


def _document(stats: ServiceStats) -> dict[str, object]:
    images = stats.images
    return {
        "users": {"total": stats.users, "disabled": stats.disabled_users},
        "images": {
            "total": images.originals + images.derived,
            "originals": images.originals,
            "derived": images.derived,
        },
        "bytes": {
            "total": images.original_bytes + images.derived_bytes,
            "originals": images.original_bytes,
            "derived": images.derived_bytes,
        },
        "jobs": {status.value: images.derived_by_status[status] for status in JobStatus},
        "queued_jobs": stats.queued_jobs,
    }


def stats(
    json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Count users, images (originals and derived), their bytes, and jobs by status.

    Queued jobs are those in the queue table, or in the production profile the outbox, not
    yet taken by a worker or relayed.
    """
    settings = load_settings()
    with service_container(settings) as container:
        found = container.get_service_stats()(ServiceStatsQuery())
    if json:
        print_json(_document(found))
        return
    images = found.images
    totals = table("", "count", "bytes")
    totals.add_row(
        "users", f"{found.users} ({found.disabled_users} disabled)", "", end_section=True
    )
    totals.add_row(
        "images",
        str(images.originals + images.derived),
        human_bytes(images.original_bytes + images.derived_bytes),
    )
    totals.add_row("  originals", str(images.originals), human_bytes(images.original_bytes))
    totals.add_row(
        "  derived", str(images.derived), human_bytes(images.derived_bytes), end_section=True
    )
    for status in JobStatus:
        totals.add_row(f"jobs {status.value}", str(images.derived_by_status[status]), "")
    totals.add_row("jobs queued", str(found.queued_jobs), "")
    stdout().print(totals)
