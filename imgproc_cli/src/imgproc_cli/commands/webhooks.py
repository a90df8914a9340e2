"""``imgproc webhooks list|retry``: users' webhook endpoints, as an operator sees them, and a
failed delivery tried once more."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from imgproc_cli.rendering import examples, moment, print_json, stdout, table
from imgproc_cli.runtime import load_settings, service_container
from imgproc_core.domain.webhook_records import WebhookEndpoint

app = typer.Typer(
    name="webhooks",
    help="Users' webhook endpoints: list them, retry a failed delivery.",
    no_args_is_help=True,
)

User = Annotated[str, typer.Option("--user", "-u", help="The user's name")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def _document(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": list(endpoint.events),
        "created_at": endpoint.created_at.isoformat(),
        "failing_since": endpoint.failing_since.isoformat() if endpoint.failing_since else None,
        "disabled_at": endpoint.disabled_at.isoformat() if endpoint.disabled_at else None,
        "disabled_reason": endpoint.disabled_reason,
    }


@app.command("list", epilog=examples("imgproc webhooks list --user alice"))
def list_webhooks(user: User, json: Json = False) -> None:
    """List a user's endpoints (their secrets are never shown)."""
    settings = load_settings()
    with service_container(settings) as container:
        found = container.list_webhooks().of_username(user)
    if json:
        print_json({"items": [_document(endpoint) for endpoint in found]})
        return
    endpoints = table("id", "url", "events", "created (UTC)", "state")
    for endpoint in found:
        if endpoint.disabled_at is not None:
            state = f"[red]disabled[/red]: {endpoint.disabled_reason}"
        else:
            state = "failing" if endpoint.failing_since is not None else "active"
        endpoints.add_row(
            endpoint.id,
            endpoint.url,
            ", ".join(endpoint.events),
            moment(endpoint.created_at),
            state,
        )
    stdout().print(endpoints)


@app.command(epilog=examples("imgproc webhooks retry msg_0123456789abcdef0123456789abcdef"))
def retry(
    delivery_id: Annotated[str, typer.Argument(help="The delivery, as its webhook-id says")],
) -> None:
    """Try a failed delivery once more, now (its endpoint, if disabled, is enabled again)."""
    settings = load_settings()
    with service_container(settings) as container:
        delivery = container.retry_delivery()(delivery_id)
    stdout().print(f"delivery [bold]{delivery.id}[/bold] is queued again")
