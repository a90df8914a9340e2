"""The bodies the API reads and writes, as msgspec Structs, and their mapping from the domain.

Request bodies forbid unknown fields, so a typo is a 422 naming the field rather than an
option silently ignored. Responses are built from domain objects here and nowhere else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec

from imgproc_core.domain import Image, Page, Transformation, User
from imgproc_core.domain.presets import PRESET_NAME_PATTERN, Preset
from imgproc_core.domain.transformations import FormatName, TransformationRequest
from imgproc_core.domain.webhook_records import WebhookEndpoint
from imgproc_core.use_cases import MAX_LINK_TTL_SECONDS, LinkView, Session, Upload

API_PREFIX: Final = "/api/v1"
#: Credentials and transformations are a few hundred bytes of JSON; only uploads are larger.
JSON_BODY_LIMIT: Final = 64 * 1024

Username = Annotated[str, msgspec.Meta(min_length=1, max_length=256, examples=["alice"])]
#: Longer passwords are refused by the domain with a clear message (bcrypt reads 72 bytes);
#: this bound only keeps absurd bodies out.
Password = Annotated[
    str, msgspec.Meta(min_length=1, max_length=4096, examples=["correct horse battery"])
]


class _Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of the request bodies."""


class _Response(msgspec.Struct, frozen=True, kw_only=True):
    """Base of the response bodies."""


# -- errors ------------------------------------------------------------------------------------


class Problem(_Response, frozen=True, omit_defaults=True):
    """Every error, as ``application/problem+json`` (RFC 9457 members plus ``code``).

    ``code`` is stable and machine-readable; ``field`` names the offending part of the request
    (``resize.width``, ``page``, ``file``) when there is one.
    """

    status: int
    title: str
    detail: str
    code: str
    field: str | None = None
    #: For ``/readyz``: each dependency and what it answered.
    checks: dict[str, str] | None = None


class NotReady(_Response, frozen=True):
    """A derived image whose job has not finished: poll again after ``Retry-After`` seconds."""

    id: str | None
    status: str
    detail: str
    code: str = "image_not_ready"
    retry_after: int = 1


# -- users -------------------------------------------------------------------------------------


class Credentials(_Request, frozen=True, kw_only=True):
    username: Username
    password: Password


class UserOut(_Response, frozen=True):
    id: str
    username: str
    created_at: datetime

    @classmethod
    def from_user(cls, user: User) -> UserOut:
        return cls(id=user.id, username=user.username, created_at=user.created_at)


class SessionOut(_Response, frozen=True):
    """An access token for ``Authorization: Bearer <access_token>``, and whom it speaks for."""

    access_token: str
    token_type: str
    expires_at: datetime
    expires_in: int
    user: UserOut

    @classmethod
    def from_session(cls, session: Session, now: datetime) -> SessionOut:
        token = session.token
        return cls(
            access_token=token.token,
            token_type=token.token_type,
            expires_at=token.expires_at,
            expires_in=max(0, int((token.expires_at - now).total_seconds())),
            user=UserOut.from_user(session.user),
        )


# -- images ------------------------------------------------------------------------------------


class ImageOut(_Response, frozen=True):
    """An original or a derived image.

    ``storage_url`` is the API address that answers with a short-lived signed URL (HTTP 307);
    the storage's own location is never shown. A derived image has ``source_id`` and its
    resolved ``transformation``; ``failure_reason`` is set when its job failed for good.
    """

    id: str
    user_id: str
    filename: str
    storage_url: str
    is_transformed: bool
    mimetype: str
    size_bytes: int
    width: int
    height: int
    format: str
    status: str
    created_at: datetime
    updated_at: datetime
    frames: int
    source_id: str | None
    transformation: Transformation | None
    failure_reason: str | None

    @classmethod
    def from_image(cls, image: Image, base_url: str) -> ImageOut:
        return cls(
            id=image.id,
            user_id=image.user_id,
            filename=image.filename,
            storage_url=f"{base_url}{API_PREFIX}/images/{image.id}",
            is_transformed=image.is_transformed,
            mimetype=image.mimetype,
            size_bytes=image.size_bytes,
            width=image.width,
            height=image.height,
            format=image.format,
            status=image.status.value,
            created_at=image.created_at,
            updated_at=image.updated_at,
            frames=image.frames,
            source_id=image.source_id,
            transformation=image.transformation,
            failure_reason=image.failure_reason,
        )


class ImagePage(_Response, frozen=True):
    """One page of the caller's images, newest first; ``total`` counts them all."""

    items: list[ImageOut]
    page: int
    limit: int
    total: int

    @classmethod
    def from_page(cls, page: Page[Image], base_url: str) -> ImagePage:
        return cls(
            items=[ImageOut.from_image(image, base_url) for image in page.items],
            page=page.page,
            limit=page.limit,
            total=page.total,
        )


# -- transformations ---------------------------------------------------------------------------


#: A preset's name: 1 to 64 of a-z, 0-9, ``_`` and ``-``.
PresetName = Annotated[str, msgspec.Meta(pattern=f"^{PRESET_NAME_PATTERN.pattern}$", max_length=64)]


class TransformRequest(TransformationRequest, frozen=True, kw_only=True):
    """The flat shape, or the same fields inside ``{"transformations": {...}}``, not both; or
    ``{"preset": NAME}`` alone, for a preset of the caller's or of the service's."""

    transformations: TransformationRequest | None = None
    preset: PresetName | None = None

    def to_mapping(self) -> dict[str, Any]:
        """The fields the client gave, as the domain's parser reads them."""
        mapping: dict[str, Any] = msgspec.to_builtins(self)
        return mapping


# -- presets -----------------------------------------------------------------------------------


class PresetRequest(_Request, frozen=True, kw_only=True):
    """A preset's transformation (the body of ``POST /transform``, without a preset of its
    own); ``eager``: made for every upload of the caller's."""

    transformation: TransformRequest
    eager: bool = False


class PresetOut(_Response, frozen=True):
    """A preset: the caller's own (``scope`` ``user``) or the service's (``service``)."""

    name: str
    scope: Literal["user", "service"]
    transformation: Transformation
    eager: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_preset(cls, preset: Preset) -> PresetOut:
        return cls(
            name=preset.name,
            scope="service" if preset.service_wide else "user",
            transformation=preset.transformation,
            eager=preset.eager,
            created_at=preset.created_at,
            updated_at=preset.updated_at,
        )


class PresetList(_Response, frozen=True):
    """The caller's presets, then the service's, each by name."""

    items: list[PresetOut]


class VariantOut(_Response, frozen=True):
    """A derivative an upload queued: for a preset it named, or an eager one of the user's."""

    preset: str
    id: str
    status: str


class UploadOut(ImageOut, frozen=True, omit_defaults=True):
    """The uploaded image, with the variants queued with it; ``variants`` is left out when
    there are none, so the answer is the image's metadata then."""

    variants: list[VariantOut] = msgspec.field(default_factory=list)

    @classmethod
    def from_upload(cls, upload: Upload, base_url: str) -> UploadOut:
        fields = msgspec.structs.asdict(ImageOut.from_image(upload.image, base_url))
        variants = [
            VariantOut(preset=v.preset, id=v.image.id, status=v.image.status.value)
            for v in upload.variants
        ]
        return cls(**fields, variants=variants)


# -- delivery links ----------------------------------------------------------------------------


class LinkTransformRequest(TransformRequest, frozen=True, kw_only=True):
    """``POST /transform``'s body, where ``format`` may also be ``auto``: the reader's
    ``Accept`` chooses (AVIF, else WebP, else JPEG, or PNG for a source with transparency)."""

    format: FormatName | Literal["auto"] | None = None  # type: ignore[assignment]

    def auto_format(self) -> tuple[bool, dict[str, Any]]:
        """Whether the format is ``auto``, and the other fields, as the domain's parser reads
        them."""
        mapping = self.to_mapping()
        auto = mapping.get("format") == "auto"
        if auto:
            del mapping["format"]
        nested = mapping.get("transformations")
        if isinstance(nested, dict) and nested.get("format") == "auto":
            auto = True
            del nested["format"]
        return auto, mapping


class LinkRequest(_Request, frozen=True, kw_only=True):
    """A link to the image itself (no ``transformation``) or to one transformation of it (the
    same body as ``POST /transform``), for ``expires_in`` seconds or until revoked."""

    transformation: LinkTransformRequest | None = None
    expires_in: Annotated[int, msgspec.Meta(ge=1, le=MAX_LINK_TTL_SECONDS)] | None = None


class LinkOut(_Response, frozen=True):
    """A delivery link: ``url`` needs no credential, and is the same for as long as the link
    lives."""

    id: str
    url: str
    image_id: str
    transformation: Transformation | None
    expires_at: datetime | None
    created_at: datetime
    #: The output format follows each reader's ``Accept`` (``"format": "auto"``).
    auto_format: bool

    @classmethod
    def from_view(cls, link: LinkView) -> LinkOut:
        return cls(
            id=link.id,
            url=link.url,
            image_id=link.image_id,
            transformation=link.transformation,
            expires_at=link.expires_at,
            created_at=link.created_at,
            auto_format=link.auto_format,
        )


class LinkList(_Response, frozen=True):
    """An image's links, oldest first."""

    items: list[LinkOut]


# -- operations --------------------------------------------------------------------------------


class Liveness(_Response, frozen=True):
    status: str = "ok"


class Readiness(_Response, frozen=True):
    status: str
    checks: dict[str, str]


# -- webhooks ----------------------------------------------------------------------------------


class WebhookRequest(_Request, frozen=True, kw_only=True):
    """An endpoint: an http or https URL, and the events to send it (``image.uploaded``,
    ``image.ready``, ``image.failed``, ``image.deleted``)."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    events: Annotated[list[str], msgspec.Meta(min_length=1, max_length=8)]


class WebhookOut(_Response, frozen=True):
    """A webhook endpoint. ``disabled_reason`` says why it was disabled, if it is."""

    id: str
    url: str
    events: list[str]
    created_at: datetime
    failing_since: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None

    @classmethod
    def from_endpoint(cls, endpoint: WebhookEndpoint) -> WebhookOut:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            events=list(endpoint.events),
            created_at=endpoint.created_at,
            failing_since=endpoint.failing_since,
            disabled_at=endpoint.disabled_at,
            disabled_reason=endpoint.disabled_reason,
        )


class WebhookCreated(WebhookOut, frozen=True, kw_only=True):
    """A new endpoint, with its signing secret: shown this once, keep it."""

    secret: str


class WebhookList(_Response, frozen=True):
    items: list[WebhookOut]


class DeliveryAttemptOut(_Response, frozen=True):
    """One attempt: its time, the answer's status (null: no answer), how long it took, and
    what went wrong, if anything did."""

    delivery_id: str
    attempted_at: datetime
    status_code: int | None
    duration_ms: int
    error: str | None


class DeliveryAttemptList(_Response, frozen=True):
    items: list[DeliveryAttemptOut]


class TestEventQueued(_Response, frozen=True):
    """The ``webhook.test`` event queued; its attempts show in ``/deliveries``."""

    delivery_id: str
