"""How commands show things: rich tables for people, JSON for scripts, examples in ``--help``.

Results (tables, confirmations) go to standard output; progress, warnings and errors to
standard error, so that a command's output can be piped whatever it reports along the way.
``--json`` prints one JSON document on standard output and nothing else there.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec
import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from imgproc_core.domain.images import Image, Page
from imgproc_core.domain.users import User

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def examples(*lines: str) -> str:
    """A ``--help`` epilog listing example command lines, kept one per line."""
    # "\b" tells Click (and Typer's rich help) not to rewrap the paragraph that follows.
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


def stdout() -> Console:
    return Console(highlight=False, soft_wrap=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def print_json(document: Any) -> None:
    typer.echo(msgspec.json.encode(document).decode())


def table(*columns: str, title: str | None = None, show_header: bool = True) -> Table:
    return Table(
        *columns,
        title=title,
        box=box.SIMPLE_HEAD,
        title_justify="left",
        show_header=show_header,
    )


def plain(value: str) -> Text:
    """Text shown as it is: a filename or a failure reason may hold ``[...]``, which rich
    would otherwise read as markup."""
    return Text(value)


def human_bytes(count: int) -> str:
    """``512 B``, ``1.5 KiB``, ``3.2 GiB``: binary units, as ``ls -h`` and ``du -h`` use."""
    if count < 1024:
        return f"{count} B"
    size = count / 1024
    for unit in _UNITS[1:-1]:
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} {_UNITS[-1]}"


def moment(value: datetime) -> str:
    """A time as an operator reads it: UTC, to the second."""
    return value.strftime("%Y-%m-%d %H:%M:%S")


def print_page(page: Page[Any], rows: Table, noun: str) -> None:
    """A page of a listing: its table (unless it is empty), then where it lies in the whole."""
    console = stdout()
    if page.items:
        console.print(rows)
        first = (page.page - 1) * page.limit + 1
        console.print(f"{first}-{first + len(page.items) - 1} of {page.total} {noun}")
    elif page.total:
        console.print(f"no {noun} on page {page.page}; there are {page.total}")
    else:
        console.print(f"no {noun}")


def user_document(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "created_at": user.created_at,
        "disabled": user.disabled,
    }


def image_document(image: Image) -> dict[str, Any]:
    return {
        "id": image.id,
        "user_id": image.user_id,
        "source_id": image.source_id,
        "is_transformed": image.is_transformed,
        "filename": image.filename,
        "format": image.format,
        "mimetype": image.mimetype,
        "width": image.width,
        "height": image.height,
        "frames": image.frames,
        "size_bytes": image.size_bytes,
        "status": image.status.value,
        "failure_reason": image.failure_reason,
        "attempts": image.attempts,
        "created_at": image.created_at,
        "updated_at": image.updated_at,
    }


def page_document(page: Page[Any], items: list[Mapping[str, Any]]) -> dict[str, Any]:
    return {"items": items, "page": page.page, "limit": page.limit, "total": page.total}
