"""``imgproc presets set|list|delete``: the service's presets, which every user may name.

They live in the database, so every API process and worker sees a change at once. A user's
preset of the same name shadows one of these for that user, except in presets-only mode
(``IMGPROC_PRESETS_ONLY``), where only these are rendered.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import typer

from imgproc_cli.errors import reported_errors
from imgproc_cli.rendering import examples, moment, print_json, stdout, table
from imgproc_cli.runtime import load_settings, service_container
from imgproc_core.domain.presets import Preset
from imgproc_core.domain.transformations import canonical_form, parse_transformation
from imgproc_core.use_cases import PresetCommand, PresetQuery

app = typer.Typer(
    name="presets",
    help="The service's presets: named transformations every user may ask for.",
    no_args_is_help=True,
)

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def _document(preset: Preset) -> dict[str, Any]:
    return {
        "name": preset.name,
        "transformation": msgspec.json.decode(canonical_form(preset.transformation)),
        "created_at": preset.created_at.isoformat(),
        "updated_at": preset.updated_at.isoformat(),
    }


@app.command(
    "set",
    epilog=examples(
        """imgproc presets set thumb '{"resize": {"width": 320}, "format": "webp"}'""",
        """imgproc presets set hero '{"resize": {"width": 1600, "height": 900, "fit": "cover"}}'""",
    ),
)
def set_preset(
    name: Annotated[str, typer.Argument(help="1 to 64 of a-z, 0-9, '_' and '-'")],
    spec: Annotated[str, typer.Argument(help="The transformation, as POST /transform takes it")],
) -> None:
    """Make or replace a service-wide preset. Derivatives made with what it said before stay
    as they are; asking through it from now on makes the new one."""
    with reported_errors():
        transformation = parse_transformation(spec)
    settings = load_settings()
    with service_container(settings) as container:
        written = container.put_preset()(PresetCommand(None, name, transformation))
    verb = "created" if written.created else "replaced"
    stdout().print(f"{verb} preset [bold]{name}[/bold]: {canonical_form(transformation).decode()}")


@app.command("list", epilog=examples("imgproc presets list", "imgproc presets list --json"))
def list_presets(json: Json = False) -> None:
    """List the service-wide presets, by name."""
    settings = load_settings()
    with service_container(settings) as container:
        found = container.list_presets()(PresetQuery(None))
    if json:
        print_json({"items": [_document(preset) for preset in found]})
        return
    presets = table("name", "transformation", "updated (UTC)")
    for preset in found:
        presets.add_row(
            preset.name, canonical_form(preset.transformation).decode(), moment(preset.updated_at)
        )
    stdout().print(presets)


@app.command(epilog=examples("imgproc presets delete thumb"))
def delete(name: Annotated[str, typer.Argument(help="The preset to delete")]) -> None:
    """Delete a service-wide preset; the derivatives made with it stay."""
    settings = load_settings()
    with service_container(settings) as container:
        container.delete_preset()(PresetQuery(None, name))
    stdout().print(f"deleted preset [bold]{name}[/bold]")
