"""Presets: a user's named transformations, and the service's, which operators keep.

Wherever a transformation is taken, ``{"preset": NAME}`` may stand instead:
:func:`resolve_transformation` turns it into the transformation it names, the caller's own
preset before the service's. With the service in presets-only mode
(``IMGPROC_PRESETS_ONLY``), only the service's presets resolve and nothing else is taken: the
service renders what its operators allowed and no more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from imgproc_core.domain.errors import (
    Conflict,
    InvalidInput,
    InvalidTransformation,
    PresetNotFound,
    PresetsOnly,
    UnknownPreset,
)
from imgproc_core.domain.presets import Preset, PresetReference, check_preset_name
from imgproc_core.domain.transformations import Transformation
from imgproc_core.ports import Clock, PresetRepository, UnitOfWorkFactory

__all__ = [
    "MAX_PRESETS_PER_USER",
    "DeletePreset",
    "GetPreset",
    "ListPresets",
    "PresetCommand",
    "PresetQuery",
    "PresetWritten",
    "PutPreset",
    "resolve_transformation",
]

#: A user's own presets at most (the service's are not counted).
MAX_PRESETS_PER_USER: Final = 100


def resolve_transformation(
    presets: PresetRepository,
    user_id: str,
    spec: Transformation | PresetReference,
    *,
    presets_only: bool,
) -> Transformation:
    """The transformation ``spec`` stands for, for ``user_id``.

    :class:`UnknownPreset` for a name that is no preset; :class:`PresetsOnly` in presets-only
    mode for anything but a service-wide preset (a transformation written out, or a name only
    the user has).
    """
    if isinstance(spec, Transformation):
        if presets_only:
            raise PresetsOnly(
                'this service renders its presets only: ask for {"preset": NAME}', "preset"
            )
        return spec
    own = presets.get(user_id, spec.name)
    if own is not None and not presets_only:
        return own.transformation
    service = presets.get(None, spec.name)
    if service is not None:
        return service.transformation
    if own is not None:
        raise PresetsOnly(
            f"this service renders its own presets only, and {spec.name!r} is one of yours",
            "preset",
        )
    raise UnknownPreset(f"no preset named {spec.name!r}", "preset")


@dataclass(frozen=True, slots=True)
class PresetCommand:
    """Set the preset ``name`` of ``user_id`` (None: the service's) to ``transformation``."""

    user_id: str | None
    name: str
    transformation: Transformation
    eager: bool = False


@dataclass(frozen=True, slots=True)
class PresetQuery:
    user_id: str | None
    name: str = ""


@dataclass(frozen=True, slots=True)
class PresetWritten:
    preset: Preset
    created: bool


class PutPreset:
    """Create or replace a preset: a user's own (at most :data:`MAX_PRESETS_PER_USER`, and
    none in presets-only mode, where they would never apply), or the service's.

    Replacing one changes what it makes from then on: a derivative made with the old
    transformation stays as it was (its id hashes what it was made with), and asking again
    through the preset makes the new one. ``eager`` belongs to a user's presets: made for every
    upload of that user."""

    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock, presets_only: bool) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._presets_only = presets_only

    def __call__(self, command: PresetCommand) -> PresetWritten:
        check_preset_name(command.name)
        if command.transformation.is_identity:
            raise InvalidTransformation("a preset names at least one transformation")
        if command.user_id is not None and self._presets_only:
            raise PresetsOnly(
                "this service renders its own presets only: a preset of yours would never apply"
            )
        if command.user_id is None and command.eager:
            raise InvalidInput("only a user's own preset is made for every upload", "eager")
        now = self._clock.now()
        for attempt in (1, 2):
            try:
                with self._uow_factory() as uow:
                    existing = uow.presets.get(command.user_id, command.name)
                    if (
                        existing is None
                        and command.user_id is not None
                        and uow.presets.count(command.user_id) >= MAX_PRESETS_PER_USER
                    ):
                        raise InvalidInput(
                            f"a user keeps at most {MAX_PRESETS_PER_USER} presets", "name"
                        )
                    preset = Preset(
                        name=command.name,
                        transformation=command.transformation,
                        created_at=existing.created_at if existing is not None else now,
                        updated_at=now,
                        user_id=command.user_id,
                        eager=command.eager,
                    )
                    created = uow.presets.put(preset)
                    uow.commit()
                    return PresetWritten(preset, created)
            except Conflict:
                # Another request made the same preset first: replace it, once.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class ListPresets:
    """A user's presets and the service's, each by name; with ``user_id`` None, the
    service's."""

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    def __call__(self, query: PresetQuery) -> Sequence[Preset]:
        with self._uow_factory() as uow:
            own = list(uow.presets.list(query.user_id)) if query.user_id is not None else []
            return [*own, *uow.presets.list(None)]


class GetPreset:
    """The preset a name stands for, for a user: theirs, else the service's."""

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    def __call__(self, query: PresetQuery) -> Preset:
        with self._uow_factory() as uow:
            found = None
            if query.user_id is not None:
                found = uow.presets.get(query.user_id, query.name)
            if found is None:
                found = uow.presets.get(None, query.name)
        if found is None:
            raise PresetNotFound(f"no preset named {query.name!r}")
        return found


class DeletePreset:
    """Remove a preset of the user's own (None: the service's); a service-wide preset is
    not the user's to remove."""

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    def __call__(self, query: PresetQuery) -> None:
        with self._uow_factory() as uow:
            if not uow.presets.delete(query.user_id, query.name):
                raise PresetNotFound(f"no preset named {query.name!r} of yours")
            uow.commit()
