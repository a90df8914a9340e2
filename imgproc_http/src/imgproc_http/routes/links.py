"""Delivery links, as their owner manages them: ``POST`` and ``GET /images/{id}/links``,
``DELETE /links/{link_id}``. Another user's image or link is as unknown as a missing one: 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, Parameter

from imgproc_core.domain import User
from imgproc_core.domain.presets import parse_transformation_or_preset
from imgproc_core.use_cases import (
    CreateLink,
    CreateLinkCommand,
    LinkQuery,
    ListLinks,
    RevokeLink,
    RevokeLinkCommand,
)
from imgproc_http.context import caller
from imgproc_http.errors import problem_responses
from imgproc_http.schemas import JSON_BODY_LIMIT, LinkList, LinkOut, LinkRequest
from imgproc_http.security import AUTHENTICATED_OPT, BEARER_SCHEME

ImageId = FromPath[Annotated[str, Parameter(min_length=1, max_length=128)]]
LinkId = FromPath[Annotated[str, Parameter(min_length=1, max_length=128)]]


class LinksController(Controller):
    path = "/"
    tags = ["links"]
    opt = {AUTHENTICATED_OPT: True}
    security = [{BEARER_SCHEME: []}]

    @post(
        "/images/{image_id:str}/links",
        status_code=201,
        sync_to_thread=True,
        request_max_body_size=JSON_BODY_LIMIT,
        summary="Make a delivery link to an image, or to one transformation of it",
        description=(
            "The link's `url` serves the bytes to anyone who has it, without a token, until "
            "`expires_in` seconds have passed (absent: until it is revoked). A transformation "
            "is checked now, as `POST /transform` checks it; its derivative is made on the "
            "link's first use."
        ),
        responses=problem_responses(401, 404, 422),
    )
    def create_link(
        self,
        image_id: ImageId,
        data: JSONBody[LinkRequest],
        request: Request[User, Any, Any],
        create_link: NamedDependency[CreateLink],
    ) -> LinkOut:
        auto_format, transformation = False, None
        if data.transformation is not None:
            auto_format, fields = data.transformation.auto_format()
            transformation = parse_transformation_or_preset(fields) if fields else None
        link = create_link(
            CreateLinkCommand(
                user_id=caller(request).id,
                image_id=image_id,
                transformation=transformation,
                expires_in=data.expires_in,
                auto_format=auto_format,
            )
        )
        return LinkOut.from_view(link)

    @get(
        "/images/{image_id:str}/links",
        sync_to_thread=True,
        summary="An image's delivery links, oldest first",
        responses=problem_responses(401, 404, 422),
    )
    def list_links(
        self,
        image_id: ImageId,
        request: Request[User, Any, Any],
        list_links: NamedDependency[ListLinks],
    ) -> LinkList:
        links = list_links(LinkQuery(user_id=caller(request).id, image_id=image_id))
        return LinkList(items=[LinkOut.from_view(link) for link in links])

    @delete(
        "/links/{link_id:str}",
        status_code=204,
        sync_to_thread=True,
        summary="Revoke a delivery link: its URL answers 404 from now on, in every process",
        responses=problem_responses(401, 404, 422),
    )
    def revoke_link(
        self,
        link_id: LinkId,
        request: Request[User, Any, Any],
        revoke_link: NamedDependency[RevokeLink],
    ) -> None:
        revoke_link(RevokeLinkCommand(user_id=caller(request).id, link_id=link_id))
