"""The report of a chaos run: one table row per round, the details of whatever went wrong, a
summary; as Markdown (printed, and ``report.md``) and JSON (``report.json``)."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chaos.checks import LostJob
from chaos.round import RoundResult

_HEADER = (
    "| round | jobs | lost | FAILED | differing | drain (s) | round (s) | refused requests "
    "| published twice | run twice | refused commits | SIGTERMed worker |\n"
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _sigterm(result: RoundResult) -> str:
    stopped = [p for p in result.processes if p.ended_by == "SIGTERM"]
    if not stopped:
        return "-"
    return ", ".join(f"exit {p.exit_status} after {_seconds(p.seconds_to_exit)} s" for p in stopped)


def row(result: RoundResult) -> str:
    redelivery = result.redelivery
    if result.aborted:
        return f"| {result.number} | aborted: {result.aborted[:200]} |\n"
    return (
        f"| {result.number} | {result.requested} | {len(result.lost)} | {result.failed_count} "
        f"| {len(result.differing)} | {_seconds(result.drain_seconds)} "
        f"| {result.round_seconds:.1f} | {sum(result.refused_requests.values())} "
        f"| {redelivery.published_more_than_once if redelivery else '-'} "
        f"| {redelivery.handled_more_than_once if redelivery else '-'} "
        f"| {sum(p.refused_commits for p in result.processes)} | {_sigterm(result)} |\n"
    )


def details(result: RoundResult) -> str:
    """What happened in one round, beyond its row."""
    lines = [f"### Round {result.number}\n"]
    if result.aborted:
        lines.append(f"**Aborted by the harness:** {result.aborted}\n")
    lines.append("| fault | at jobs ended | at (s) | took (s) | what |\n|---|---:|---:|---:|---|\n")
    for fault in result.faults:
        lines.append(
            f"| {fault.name} | {fault.ended_jobs if fault.injected else '-'} "
            f"| {_seconds(fault.started_at)} | {_seconds(fault.seconds)} | {fault.detail} |\n"
        )
    if result.redelivery:
        r = result.redelivery
        lines.append(
            f"\n{r.messages_on_topic} messages on the job topic for {result.requested} jobs; "
            f"worker outcomes {r.outcomes}; {r.handled_by_several_workers} jobs run by more "
            f"than one worker; {result.dead_letters} dead letters; "
            f"{len(result.stray_objects)} objects of no READY image.\n"
        )
    for record in result.processes:
        if record.refused_commits:
            lines.append(
                f"- {record.name} ({record.ended_by}, exit {record.exit_status}): "
                f"{record.refused_commits} refused commits, the last: "
                f"`{record.last_refused_commit}`\n"
            )
    for note in result.notes:
        lines.append(f"\n**Note:** {note}\n")
    if result.refused_requests:
        lines.append(f"\nRefused requests: {result.refused_requests}\n")
    for reason, ids in result.failed.items():
        lines.append(f"\nFAILED ({len(ids)}): {reason}: {', '.join(ids[:20])}\n")
    lines.extend(_lost(result.lost))
    for difference in result.differing[:20]:
        lines.append(
            f"\n**Differs** `{difference.image_id}` ({difference.source}, "
            f"`{difference.transformation}`): {difference.reason}\n"
        )
    if len(result.differing) > 20:
        lines.append(f"\n... and {len(result.differing) - 20} more differing objects\n")
    lines.append(f"\nLogs: `{result.log_folder}`\n")
    return "".join(lines)


def _lost(lost_jobs: Sequence[LostJob]) -> list[str]:
    """The lost jobs by partition: where their messages are, who held the partition when,
    then each job."""
    lines = []
    by_partition: dict[int, list[LostJob]] = defaultdict(list)
    for lost in lost_jobs:
        by_partition[lost.partition].append(lost)
    for partition, jobs in sorted(by_partition.items()):
        copies = [(o, when) for lost in jobs for p, o, when in lost.on_topic if p == partition]
        offsets = sorted(offset for offset, _ in copies)
        published = sorted(when for _, when in copies)
        first = jobs[0]
        lines.append(
            f"\n**Lost on partition {partition}: {len(jobs)} jobs**, messages at offsets "
            f"{_ranges(offsets) or 'none'}"
            + (f", published {published[0]}-{published[-1]} UTC" if published else "")
            + f"; the partition's end offset {first.partition_end}, the group's committed "
            f"offset {first.committed_offset}.\n"
        )
        if first.partition_history:
            lines.append("  The assignments of the workers that held it:\n")
            lines.extend(f"    {line}\n" for line in first.partition_history[-16:])
        for lost in jobs:
            lines.append(
                f"- `{lost.image_id}` (source `{lost.source_id}`): {lost.status}, attempts "
                f"{lost.attempts}, {'still' if lost.in_outbox else 'not'} in the outbox; on the "
                f"topic at {_copies(lost) or 'nowhere'}; {lost.ended_after_it} messages after "
                f"it on the partition ended"
                f"{'; committed past it' if lost.committed_past else ''}; "
                f"{len(lost.worker_lines) or 'no'} worker log lines name it\n"
            )
            lines.extend(f"    {line}\n" for line in lost.worker_lines[-10:])
    return lines


def _ranges(offsets: Sequence[int]) -> str:
    """``[3, 4, 5, 9]`` as ``3-5, 9``."""
    spans: list[list[int]] = []
    for offset in offsets:
        if spans and offset == spans[-1][1] + 1:
            spans[-1][1] = offset
        else:
            spans.append([offset, offset])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)


def _copies(lost: LostJob) -> str:
    return ", ".join(
        f"[{partition}]@{offset} (published {published})"
        for partition, offset, published in lost.on_topic
    )


def summary(results: Sequence[RoundResult]) -> str:
    lost = sum(len(r.lost) for r in results)
    failed = sum(r.failed_count for r in results)
    differing = sum(len(r.differing) for r in results)
    drains = [r.drain_seconds for r in results if r.drain_seconds is not None]
    clean = sum(r.clean for r in results)
    drain = (
        f"drain {min(drains):.1f}-{max(drains):.1f} s (mean {sum(drains) / len(drains):.1f})"
        if drains
        else "no round drained"
    )
    return (
        f"{len(results)} rounds, {sum(r.requested for r in results)} jobs: {lost} lost, "
        f"{failed} FAILED, {differing} differing; {clean} of {len(results)} rounds clean; "
        f"{drain}.\n"
    )


def markdown(results: Sequence[RoundResult], context: dict[str, Any]) -> str:
    head = (
        f"# Chaos run {context['started']}\n\n"
        f"Revision `{context['revision']}`; {context['machine']}; "
        f"{context['jobs']} jobs a round.\n\n"
    )
    table = _HEADER + "".join(row(r) for r in results)
    return (
        head
        + table
        + "\n"
        + summary(results)
        + "\n## Rounds\n\n"
        + "\n".join(details(r) for r in results)
    )


def write(folder: Path, results: Sequence[RoundResult], context: dict[str, Any]) -> Path:
    """``report.md`` and ``report.json`` in ``folder``; the Markdown's path."""
    folder.mkdir(parents=True, exist_ok=True)
    text = markdown(results, context)
    (folder / "report.md").write_text(text)
    data = {
        **context,
        "summary": summary(results).strip(),
        "rounds": [
            {**dataclasses.asdict(r), "clean": r.clean, "failed_count": r.failed_count}
            for r in results
        ],
    }
    (folder / "report.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    return folder / "report.md"
