"""``imgproc presets``: the service's presets, set, listed and deleted by an operator, and
seen at once by the API of the same database."""

from __future__ import annotations

from pathlib import Path

from imgproc_core.domain.presets import PresetReference
from tests.support.cli import Cli, ServiceSide

PASSWORD = "correct horse battery"


def test_a_service_preset_set_on_the_command_line_serves_every_user(
    cli: Cli, service: ServiceSide, corpus_dir: Path
) -> None:
    cli.create_user("alice", PASSWORD)
    made = cli("presets", "set", "thumb", '{"resize": {"width": 32}, "format": "webp"}')
    replaced = cli("presets", "set", "thumb", '{"resize": {"width": 48}, "format": "webp"}')
    assert "created preset thumb" in made.stdout
    assert "replaced preset thumb" in replaced.stdout

    alice = service.user_id("alice", PASSWORD)
    photo = service.upload(alice, corpus_dir / "pillow" / "hopper.png")
    derived = service.request(photo, PresetReference("thumb"))

    assert (derived.format, derived.width) == ("webp", 48)
    listed = cli.json("presets", "list")["items"]
    assert [(item["name"], item["transformation"]) for item in listed] == [
        ("thumb", {"format": "webp", "resize": {"width": 48}})
    ]
    assert "thumb" in cli("presets", "list").stdout


def test_presets_are_deleted_and_bad_ones_refused_with_a_status(cli: Cli) -> None:
    cli("presets", "set", "thumb", '{"resize": {"width": 32}}')

    bad_name = cli("presets", "set", "Thumb!", '{"resize": {"width": 32}}', expect=2)
    bad_spec = cli("presets", "set", "spin", '{"spin": 3}', expect=2)
    not_json = cli("presets", "set", "spin", "{", expect=2)
    nested = cli("presets", "set", "again", '{"preset": "thumb"}', expect=2)
    cli("presets", "delete", "thumb")
    gone = cli("presets", "delete", "thumb", expect=3)

    assert "1 to 64 of a-z" in bad_name.stderr
    assert "spin" in bad_spec.stderr
    assert "malformed JSON" in not_json.stderr
    assert "preset" in nested.stderr
    assert "no preset named 'thumb'" in gone.stderr
    assert cli.json("presets", "list") == {"items": []}
