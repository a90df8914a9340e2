"""``imgproc images list|purge --user U``: one user's images, as the operator sees them."""

from __future__ import annotations

from typing import Annotated

import typer

from imgproc_cli.errors import EXIT_FAILURE, fail
from imgproc_cli.rendering import (
    examples,
    human_bytes,
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
from imgproc_core.use_cases import PurgeUserImagesCommand, UserImagesQuery

app = typer.Typer(
    name="images",
    help="One user's images: list them, or delete them all.",
    no_args_is_help=True,
)

User = Annotated[str, typer.Option("--user", "-u", help="The user's name")]


@app.command(
    "list",
    epilog=examples("imgproc images list --user alice", "imgproc images list -u alice --json"),
)
def list_images(
    user: User,
    page: Annotated[int, typer.Option(min=1, help="Page to show, from 1")] = 1,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Images per page")] = 100,
    json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """List a user's images, originals and derived ones, newest first."""
    settings = load_settings()
    with service_container(settings) as container:
        found = container.list_user_images()(UserImagesQuery(user, page=page, limit=limit))
    if json:
        print_json(page_document(found, [image_document(image) for image in found.items]))
        return
    images = table("id", "filename", "kind", "format", "size", "bytes", "status", "created (UTC)")
    for image in found.items:
        images.add_row(
            image.id,
            plain(image.filename),
            f"derived from {image.source_id}" if image.source_id else "original",
            image.format,
            f"{image.width}x{image.height}",
            human_bytes(image.size_bytes),
            image.status.value,
            moment(image.created_at),
        )
    print_page(found, images, "images")


@app.command(
    epilog=examples("imgproc images purge --user alice", "imgproc images purge -u alice --yes")
)
def purge(
    user: User,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
) -> None:
    """Delete every image of a user, originals and derived ones: their records and their
    files. The account stays; `imgproc users disable` locks it.

    Asks for confirmation first unless --yes is given.
    """
    settings = load_settings()
    with service_container(settings) as container:
        if not yes:
            count = container.list_user_images()(UserImagesQuery(user, limit=1)).total
            if not typer.confirm(f"Delete all {count} images of {user}, files included?"):
                fail("nothing was deleted", EXIT_FAILURE)
        report = container.purge_user_images()(PurgeUserImagesCommand(user))
    stdout().print(
        f"purged {report.user.username}: {report.originals} originals and {report.derived} "
        f"derived images, {human_bytes(report.size_bytes)}"
    )
    if report.blobs_left:
        fail(
            f"{report.blobs_left} files could not be removed (reported above); nothing refers "
            f"to them any more, and they lie under {report.user.id}/ in the storage",
            EXIT_FAILURE,
        )
