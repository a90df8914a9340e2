"""Rows to domain entities and back, field by field."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from imgproc_core.adapters.sqlalchemy.models import ImageRow, LinkRow, PresetRow, UserRow
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus
from imgproc_core.domain.links import Link
from imgproc_core.domain.presets import Preset
from imgproc_core.domain.transformations import Transformation, canonical_form
from imgproc_core.domain.users import User

_transformation_decoder = msgspec.json.Decoder(Transformation)


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is a defect in the caller, not a guess to make."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is required, got {moment!r}")
    return moment.astimezone(UTC)


def user_to_row(user: User) -> UserRow:
    row = UserRow(id=user.id)
    copy_user_to_row(user, row)
    return row


def copy_user_to_row(user: User, row: UserRow) -> None:
    row.username = user.username
    row.password_hash = user.password_hash
    row.created_at = utc(user.created_at)
    row.disabled = user.disabled


def user_from_row(row: UserRow) -> User:
    return User(
        id=row.id,
        username=row.username,
        password_hash=row.password_hash,
        created_at=row.created_at,
        disabled=row.disabled,
    )


def image_to_row(image: Image) -> ImageRow:
    row = ImageRow(id=image.id)
    copy_image_to_row(image, row)
    return row


def copy_image_to_row(image: Image, row: ImageRow) -> None:
    row.user_id = image.user_id
    row.source_id = image.source_id
    row.filename = image.filename
    row.storage_key = image.storage_key
    row.mimetype = image.mimetype
    row.format = image.format
    row.size_bytes = image.size_bytes
    row.width = image.width
    row.height = image.height
    row.frames = image.frames
    row.transparent = image.transparent
    row.status = image.status.value
    row.transformation = (
        canonical_form(image.transformation).decode() if image.transformation is not None else None
    )
    row.failure_reason = image.failure_reason
    row.attempts = image.attempts
    row.created_at = utc(image.created_at)
    row.updated_at = utc(image.updated_at)


def image_from_row(row: ImageRow) -> Image:
    return Image(
        id=row.id,
        user_id=row.user_id,
        filename=row.filename,
        storage_key=row.storage_key,
        mimetype=row.mimetype,
        format=row.format,
        size_bytes=row.size_bytes,
        width=row.width,
        height=row.height,
        status=JobStatus(row.status),
        created_at=row.created_at,
        updated_at=row.updated_at,
        source_id=row.source_id,
        transformation=(
            _transformation_decoder.decode(row.transformation)
            if row.transformation is not None
            else None
        ),
        failure_reason=row.failure_reason,
        frames=row.frames,
        attempts=row.attempts,
        transparent=row.transparent,
    )


def link_to_row(link: Link) -> LinkRow:
    return LinkRow(
        id=link.id,
        user_id=link.user_id,
        image_id=link.image_id,
        transformation=link.transformation,
        created_at=utc(link.created_at),
        expires_at=utc(link.expires_at) if link.expires_at is not None else None,
        auto_format=link.auto_format,
    )


def link_from_row(row: LinkRow) -> Link:
    return Link(
        id=row.id,
        user_id=row.user_id,
        image_id=row.image_id,
        transformation=row.transformation,
        created_at=row.created_at,
        expires_at=row.expires_at,
        auto_format=row.auto_format,
    )


#: The ``owner`` of the service's presets.
SERVICE_OWNER = ""


def preset_to_row(preset: Preset) -> PresetRow:
    return PresetRow(
        owner=preset.user_id if preset.user_id is not None else SERVICE_OWNER,
        name=preset.name,
        transformation=canonical_form(preset.transformation).decode(),
        eager=preset.eager,
        created_at=utc(preset.created_at),
        updated_at=utc(preset.updated_at),
    )


def preset_from_row(row: PresetRow) -> Preset:
    return Preset(
        name=row.name,
        transformation=_transformation_decoder.decode(row.transformation),
        created_at=row.created_at,
        updated_at=row.updated_at,
        user_id=row.owner if row.owner != SERVICE_OWNER else None,
        eager=row.eager,
    )
