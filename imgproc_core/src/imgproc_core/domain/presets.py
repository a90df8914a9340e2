"""Presets: named transformations, a user's own or the service's.

``{"preset": "thumb"}`` stands wherever a transformation does. A user's preset shadows a
service-wide one of the same name; with the service in presets-only mode, only service-wide
presets are taken, and nothing else. A preset is resolved to its transformation before the
derived id is computed, so a preset and the same transformation written out are one derivative.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from imgproc_core.domain.errors import InvalidPresetName, InvalidTransformation
from imgproc_core.domain.transformations import Transformation, parse_transformation

#: 1 to 64 of lowercase letters, digits, ``_`` and ``-``.
PRESET_NAME_PATTERN: Final = re.compile(r"[a-z0-9_-]{1,64}")


def check_preset_name(name: str, field: str = "name") -> str:
    if not PRESET_NAME_PATTERN.fullmatch(name):
        raise InvalidPresetName("a preset's name is 1 to 64 of a-z, 0-9, '_' and '-'", field)
    return name


@dataclass(frozen=True, slots=True)
class Preset:
    """A named transformation: the user's when ``user_id`` is set, the service's when it is
    None. An ``eager`` preset of a user is made for every upload of that user."""

    name: str
    transformation: Transformation
    created_at: datetime
    updated_at: datetime
    user_id: str | None = None
    eager: bool = False

    @property
    def service_wide(self) -> bool:
        return self.user_id is None


@dataclass(frozen=True, slots=True)
class PresetReference:
    """``{"preset": name}``: a transformation to look up, not yet resolved."""

    name: str


def parse_transformation_or_preset(
    body: Mapping[str, Any],
) -> Transformation | PresetReference:
    """A request's transformation, or ``{"preset": NAME}`` standing for one; a preset stands
    alone (to change what it makes, make another preset)."""
    if "preset" not in body:
        return parse_transformation(body)
    name = body["preset"]
    others = sorted(key for key, value in body.items() if key != "preset" and value is not None)
    if others:
        raise InvalidTransformation(
            f"a preset stands alone; {', '.join(others)} cannot go with it", others[0]
        )
    if not isinstance(name, str):
        raise InvalidTransformation("preset is the name of a preset", "preset")
    return PresetReference(check_preset_name(name, "preset"))
