"""Rows to domain entities and back, field by field."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from imgproc_core.adapters.sqlalchemy.models import (
    DeliveryAttemptRow,
    ImageRow,
    LinkRow,
    PresetRow,
    UserRow,
    WebhookDeliveryRow,
    WebhookEndpointRow,
)
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus
from imgproc_core.domain.links import Link
from imgproc_core.domain.presets import Preset
from imgproc_core.domain.transformations import Transformation, canonical_form
from imgproc_core.domain.users import User
from imgproc_core.domain.webhook_records import (
    DeliveryAttempt,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
)

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


def endpoint_to_row(endpoint: WebhookEndpoint) -> WebhookEndpointRow:
    return WebhookEndpointRow(
        id=endpoint.id,
        user_id=endpoint.user_id,
        url=endpoint.url,
        events=",".join(endpoint.events),
        secret=endpoint.secret,
        created_at=utc(endpoint.created_at),
        failing_since=_utc_or_none(endpoint.failing_since),
        disabled_at=_utc_or_none(endpoint.disabled_at),
        disabled_reason=endpoint.disabled_reason,
    )


def endpoint_from_row(row: WebhookEndpointRow) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row.id,
        user_id=row.user_id,
        url=row.url,
        events=tuple(event for event in row.events.split(",") if event),
        secret=row.secret,
        created_at=row.created_at,
        failing_since=row.failing_since,
        disabled_at=row.disabled_at,
        disabled_reason=row.disabled_reason,
    )


def delivery_values(delivery: WebhookDelivery) -> dict[str, object]:
    """The columns of a delivery, lease aside."""
    return {
        "id": delivery.id,
        "endpoint_id": delivery.endpoint_id,
        "user_id": delivery.user_id,
        "event_type": delivery.event_type,
        "body": delivery.body,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "created_at": utc(delivery.created_at),
        "next_attempt_at": utc(delivery.next_attempt_at),
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "finished_at": _utc_or_none(delivery.finished_at),
    }


def delivery_from_row(row: WebhookDeliveryRow) -> WebhookDelivery:
    return WebhookDelivery(
        id=row.id,
        endpoint_id=row.endpoint_id,
        user_id=row.user_id,
        event_type=row.event_type,
        body=bytes(row.body),
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        finished_at=row.finished_at,
    )


def attempt_to_row(attempt: DeliveryAttempt) -> DeliveryAttemptRow:
    return DeliveryAttemptRow(
        delivery_id=attempt.delivery_id,
        endpoint_id=attempt.endpoint_id,
        attempted_at=utc(attempt.attempted_at),
        duration_ms=attempt.duration_ms,
        status_code=attempt.status_code,
        error=attempt.error,
    )


def attempt_from_row(row: DeliveryAttemptRow) -> DeliveryAttempt:
    return DeliveryAttempt(
        delivery_id=row.delivery_id,
        endpoint_id=row.endpoint_id,
        attempted_at=row.attempted_at,
        duration_ms=row.duration_ms,
        status_code=row.status_code,
        error=row.error,
    )


def _utc_or_none(moment: datetime | None) -> datetime | None:
    return utc(moment) if moment is not None else None
