"""``imgproc users create|list|disable``: accounts, through the service's own use cases."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from imgproc_cli.errors import EXIT_USAGE, fail
from imgproc_cli.rendering import (
    examples,
    moment,
    page_document,
    print_json,
    print_page,
    stdout,
    table,
    user_document,
)
from imgproc_cli.runtime import load_settings, service_container
from imgproc_core.use_cases import (
    DisableUserCommand,
    ListUsersQuery,
    RegisterUserCommand,
)
from imgproc_core.use_cases.admin import TOKENS_REFUSED_WITHIN_SECONDS

app = typer.Typer(
    name="users",
    help="Accounts: create, list and disable them.",
    no_args_is_help=True,
)

Page = Annotated[int, typer.Option(min=1, help="Page to show, from 1")]
Limit = Annotated[int, typer.Option(min=1, max=1000, help="Users per page")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def _password_from_stdin() -> str:
    text = sys.stdin.read()
    # One trailing line break is how `echo` and files end a line; it is not part of the
    # password. Anything else is.
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        fail("no password on standard input", EXIT_USAGE)
    return password


@app.command(
    epilog=examples(
        "imgproc users create alice",
        "printf '%s' \"$PASSWORD\" | imgproc users create alice --password-stdin",
    )
)
def create(
    username: Annotated[str, typer.Argument(help="3 to 32 characters: a-z, 0-9, '.', '_', '-'")],
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the password from standard input instead of asking for it",
        ),
    ] = False,
) -> None:
    """Create an account, as registering through the API does.

    The password is asked for twice, without echo, unless --password-stdin is given. Names are
    case-insensitive; a password has 8 characters to 72 bytes.
    """
    settings = load_settings()
    with service_container(settings) as container:
        if password_stdin:
            password = _password_from_stdin()
        else:
            password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        session = container.register_user()(RegisterUserCommand(username, password))
    stdout().print(f"created user [bold]{session.user.username}[/bold] ({session.user.id})")


@app.command("list", epilog=examples("imgproc users list", "imgproc users list --json"))
def list_users(page: Page = 1, limit: Limit = 100, json: Json = False) -> None:
    """List the accounts in the order they registered."""
    settings = load_settings()
    with service_container(settings) as container:
        found = container.list_users()(ListUsersQuery(page=page, limit=limit))
    if json:
        print_json(page_document(found, [user_document(user) for user in found.items]))
        return
    users = table("username", "id", "created (UTC)", "state")
    for user in found.items:
        state = "[red]disabled[/red]" if user.disabled else "active"
        users.add_row(user.username, user.id, moment(user.created_at), state)
    print_page(found, users, "users")


@app.command(
    help=(
        "Disable an account: it can no longer log in, and the tokens it holds are refused "
        f"within {TOKENS_REFUSED_WITHIN_SECONDS} seconds. Its images stay."
    ),
    epilog=examples("imgproc users disable alice"),
)
def disable(username: Annotated[str, typer.Argument(help="The account to disable")]) -> None:
    settings = load_settings()
    with service_container(settings) as container:
        user = container.disable_user()(DisableUserCommand(username))
    stdout().print(
        f"user [bold]{user.username}[/bold] is disabled: it can no longer log in, and its "
        f"tokens are refused within {TOKENS_REFUSED_WITHIN_SECONDS} seconds"
    )
