"""Delivery links: the owner of an image makes, lists and revokes them; anyone holding one
reads the image (or one transformation of it) through it.

A link is a row, so a revocation is seen at once by every process. Its URL is
``<base>/d/<token>``, the token an HMAC-signed link id (:mod:`imgproc_core.domain.links`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import msgspec

from imgproc_core.domain.errors import (
    DependencyUnavailable,
    InvalidInput,
    InvalidTransformation,
    LinkNotFound,
    RateLimited,
)
from imgproc_core.domain.images import Image
from imgproc_core.domain.limits import Limits, user_rate_key
from imgproc_core.domain.links import Link, format_for_reader, link_id_of, link_token
from imgproc_core.domain.presets import PresetReference
from imgproc_core.domain.transformations import (
    Transformation,
    canonical_form,
    derived_image_id,
)
from imgproc_core.ports.cache import RateLimit, RateLimiter
from imgproc_core.ports.clock import Clock
from imgproc_core.ports.persistence import PresetRepository, UnitOfWorkFactory
from imgproc_core.use_cases.images import owned_image
from imgproc_core.use_cases.pipeline import plan_render
from imgproc_core.use_cases.presets import resolve_transformation
from imgproc_core.use_cases.transforms import RequestTransform, RequestTransformCommand

__all__ = [
    "DELIVERY_PATH",
    "MAX_LINK_TTL_SECONDS",
    "CreateLink",
    "CreateLinkCommand",
    "LinkQuery",
    "LinkTarget",
    "LinkView",
    "ListLinks",
    "OpenLink",
    "ResolveLink",
    "ResolvedLink",
    "RevokeLink",
    "RevokeLinkCommand",
]

#: Where links are served, under the service's public base URL.
DELIVERY_PATH: Final = "/d"
#: The longest a link given an expiry may live: ten years (one without lives until revoked).
MAX_LINK_TTL_SECONDS: Final = 10 * 365 * 24 * 3600

_transformation_decoder = msgspec.json.Decoder(Transformation)


@dataclass(frozen=True, slots=True)
class CreateLinkCommand:
    user_id: str
    image_id: str
    #: None: the image itself.
    transformation: Transformation | PresetReference | None = None
    #: Seconds from now; None: until revoked.
    expires_in: int | None = None
    #: ``"format": "auto"``: each reader gets the format its ``Accept`` prefers
    #: (``transformation`` then names no format).
    auto_format: bool = False


@dataclass(frozen=True, slots=True)
class LinkQuery:
    user_id: str
    image_id: str


@dataclass(frozen=True, slots=True)
class RevokeLinkCommand:
    user_id: str
    link_id: str


@dataclass(frozen=True, slots=True)
class LinkView:
    """A link as its owner sees it: ``url`` is absolute."""

    id: str
    url: str
    image_id: str
    transformation: Transformation | None
    created_at: datetime
    expires_at: datetime | None
    auto_format: bool = False


@dataclass(frozen=True, slots=True)
class ResolvedLink:
    """What a link serves: its image (the original it points at) and the transformation to
    apply, None for the image itself."""

    link: Link
    image: Image
    transformation: Transformation | None


class _Links:
    def __init__(self, key: bytes, base_url: str) -> None:
        self._key = key
        self._base_url = base_url.rstrip("/")

    def view(self, link: Link) -> LinkView:
        return LinkView(
            id=link.id,
            url=f"{self._base_url}{DELIVERY_PATH}/{link_token(self._key, link.id)}",
            image_id=link.image_id,
            transformation=_decoded(link.transformation),
            created_at=link.created_at,
            expires_at=link.expires_at,
            auto_format=link.auto_format,
        )


def _with_format(transformation: Transformation, output: str) -> Transformation:
    return msgspec.structs.replace(transformation, format=output)


def _decoded(transformation: str | None) -> Transformation | None:
    return None if transformation is None else _transformation_decoder.decode(transformation)


class CreateLink(_Links):
    """A new link to one of the caller's images.

    A transformation is checked now as ``POST /transform`` checks it (only originals are
    transformed; the plan fits the source and the limits), so that a link never promises what
    its first reader cannot get. The derivative itself is made on the link's first use.
    """

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        limits: Limits,
        key: bytes,
        base_url: str,
        presets_only: bool = False,
    ) -> None:
        super().__init__(key, base_url)
        self._uow_factory = uow_factory
        self._clock = clock
        self._limits = limits
        self._presets_only = presets_only

    def __call__(self, command: CreateLinkCommand) -> LinkView:
        expires_in = command.expires_in
        if expires_in is not None and not 1 <= expires_in <= MAX_LINK_TTL_SECONDS:
            raise InvalidInput(
                f"expires_in is between 1 and {MAX_LINK_TTL_SECONDS} seconds", "expires_in"
            )
        now = self._clock.now()
        with self._uow_factory() as uow:
            image = owned_image(uow.images, command.user_id, command.image_id)
            transformation = self._transformation(uow.presets, command)
            if transformation is not None:
                if image.is_transformed:
                    raise InvalidTransformation(
                        f"image {image.id} is a derived image; link a transformation of its "
                        f"original {image.source_id} instead"
                    )
                plan_render(
                    _with_format(transformation, "jpeg") if command.auto_format else transformation,
                    source_format=image.format,
                    width=image.width,
                    height=image.height,
                    limits=self._limits,
                )
            link = Link(
                id=uuid.uuid4().hex,
                user_id=image.user_id,
                image_id=image.id,
                created_at=now,
                transformation=(
                    canonical_form(transformation).decode() if transformation is not None else None
                ),
                expires_at=now + timedelta(seconds=expires_in) if expires_in is not None else None,
                auto_format=command.auto_format,
            )
            uow.links.add(link)
            uow.commit()
        return self.view(link)

    def _transformation(
        self, presets: PresetRepository, command: CreateLinkCommand
    ) -> Transformation | None:
        """What the link will apply, a preset resolved now (the link is pinned to what it
        names today); None for the image itself."""
        spec = command.transformation
        if spec is None and command.auto_format:
            spec = Transformation()
        if spec is None:
            return None
        transformation = resolve_transformation(
            presets, command.user_id, spec, presets_only=self._presets_only
        )
        if command.auto_format:
            return msgspec.structs.replace(transformation, format=None)
        return None if transformation.is_identity else transformation


class ListLinks(_Links):
    """The links of one of the caller's images, oldest first."""

    def __init__(self, uow_factory: UnitOfWorkFactory, key: bytes, base_url: str) -> None:
        super().__init__(key, base_url)
        self._uow_factory = uow_factory

    def __call__(self, query: LinkQuery) -> Sequence[LinkView]:
        with self._uow_factory() as uow:
            owned_image(uow.images, query.user_id, query.image_id)
            links = uow.links.list_for_image(query.image_id)
        return [self.view(link) for link in links]


class RevokeLink:
    """Revoke one of the caller's links; someone else's is as unknown as one never made."""

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    def __call__(self, command: RevokeLinkCommand) -> None:
        with self._uow_factory() as uow:
            link = uow.links.get(command.link_id)
            if link is None or link.user_id != command.user_id or not uow.links.delete(link.id):
                raise LinkNotFound(f"no link {command.link_id!r}")
            uow.commit()


class ResolveLink:
    """What the link in a URL's token serves; :class:`LinkNotFound` for an edited, unknown,
    revoked or expired token, or one whose image is gone, all alike."""

    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock, key: bytes) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._key = key

    def __call__(self, token: str) -> ResolvedLink:
        link_id = link_id_of(self._key, token)
        if link_id is None:
            raise LinkNotFound("no such link")
        with self._uow_factory() as uow:
            found = uow.links.get_with_image(link_id)
        if found is None or not found[0].is_live(self._clock.now()):
            raise LinkNotFound("no such link")
        link, image = found
        return ResolvedLink(link=link, image=image, transformation=_decoded(link.transformation))


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """What a link's reader gets: ``image`` is the image to serve (the original, or the
    derivative of the link's transformation, whose status may not be READY yet);
    ``render_started`` says whether this reader's request queued its job."""

    link: Link
    image: Image
    render_started: bool


class OpenLink:
    """The image a link serves, its derivative's job queued on the link's first use.

    The derivative is the one ``POST /transform`` would make (the same derived id, so the same
    job; concurrent first uses make one). Queuing it counts against the link owner's transform
    rate limit (:class:`RateLimited` when spent); serving what exists counts nothing. A rate
    limiter that does not answer lets the render through, as the API's guard lets a transform
    request through.
    """

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        resolve: ResolveLink,
        request_transform: RequestTransform,
        rate_limiter: RateLimiter,
        transform_rate: RateLimit,
    ) -> None:
        self._uow_factory = uow_factory
        self._resolve = resolve
        self._request_transform = request_transform
        self._rate_limiter = rate_limiter
        self._transform_rate = transform_rate

    def __call__(self, token: str, accept: str | None = None) -> LinkTarget:
        resolved = self._resolve(token)
        link, source, transformation = resolved.link, resolved.image, resolved.transformation
        if link.auto_format:
            chosen = format_for_reader(accept, transparent=source.transparent)
            transformation = _with_format(transformation or Transformation(), chosen)
        if transformation is None:
            return LinkTarget(link=link, image=source, render_started=False)
        with self._uow_factory() as uow:
            # The id RequestTransform gives it: of the transformation resolved for the source.
            resolved_id = derived_image_id(source.id, transformation.resolved(source.format))
            existing = uow.images.get(resolved_id)
        if existing is not None:
            return LinkTarget(link=link, image=existing, render_started=False)
        try:
            decision = self._rate_limiter.hit(
                user_rate_key("transform", link.user_id), self._transform_rate
            )
        except DependencyUnavailable:
            decision = None
        if decision is not None and not decision.allowed:
            raise RateLimited(
                "the link's owner has asked for too many transformations; try again later",
                decision.retry_after,
            )
        derived = self._request_transform.resolved(
            RequestTransformCommand(link.user_id, source.id, transformation)
        )
        return LinkTarget(link=link, image=derived, render_started=True)
