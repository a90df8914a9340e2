"""``/presets``: the caller's named transformations, beside the service's.

``PUT /presets/{name}`` makes or replaces one of the caller's (201, then 200); ``GET`` lists
the caller's and the service's, each marked with its ``scope``; ``GET`` and ``DELETE`` of one
name. A name the caller has stands for their preset, else for the service's; only the
caller's own can be deleted (a service-wide one is the operators', ``imgproc presets``).
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, Parameter

from imgproc_core.domain import User, parse_transformation
from imgproc_core.use_cases import (
    DeletePreset,
    GetPreset,
    ListPresets,
    PresetCommand,
    PresetQuery,
    PutPreset,
)
from imgproc_http.context import caller
from imgproc_http.errors import problem_responses
from imgproc_http.schemas import JSON_BODY_LIMIT, PresetList, PresetOut, PresetRequest
from imgproc_http.security import AUTHENTICATED_OPT, BEARER_SCHEME

PresetPathName = FromPath[Annotated[str, Parameter(min_length=1, max_length=64)]]


class PresetsController(Controller):
    path = "/presets"
    tags = ["presets"]
    opt = {AUTHENTICATED_OPT: True}
    security = [{BEARER_SCHEME: []}]

    @put(
        "/{name:str}",
        sync_to_thread=True,
        request_max_body_size=JSON_BODY_LIMIT,
        summary="Make or replace one of the caller's presets",
        description=(
            "201 when it is new, 200 when it replaced one. The name is 1 to 64 of a-z, 0-9, "
            "`_` and `-`; it shadows a service-wide preset of the same name for the caller. "
            "`eager`: made for every upload of the caller's. Refused with 422 `presets_only` "
            "when the service renders its own presets only."
        ),
        responses={
            201: ResponseSpec(PresetOut, description="Created", generate_examples=False),
            **problem_responses(401, 422),
        },
    )
    def put_preset(
        self,
        name: PresetPathName,
        data: JSONBody[PresetRequest],
        request: Request[User, Any, Any],
        put_preset: NamedDependency[PutPreset],
    ) -> Response[PresetOut]:
        written = put_preset(
            PresetCommand(
                user_id=caller(request).id,
                name=name,
                transformation=parse_transformation(data.transformation.to_mapping()),
                eager=data.eager,
            )
        )
        return Response(
            PresetOut.from_preset(written.preset), status_code=201 if written.created else 200
        )

    @get(
        "/",
        sync_to_thread=True,
        summary="The caller's presets and the service's",
        responses=problem_responses(401),
    )
    def list_presets(
        self, request: Request[User, Any, Any], list_presets: NamedDependency[ListPresets]
    ) -> PresetList:
        found = list_presets(PresetQuery(user_id=caller(request).id))
        return PresetList(items=[PresetOut.from_preset(preset) for preset in found])

    @get(
        "/{name:str}",
        sync_to_thread=True,
        summary="The preset a name stands for: the caller's, else the service's",
        responses=problem_responses(401, 404, 422),
    )
    def get_preset(
        self,
        name: PresetPathName,
        request: Request[User, Any, Any],
        get_preset: NamedDependency[GetPreset],
    ) -> PresetOut:
        return PresetOut.from_preset(get_preset(PresetQuery(caller(request).id, name)))

    @delete(
        "/{name:str}",
        status_code=204,
        sync_to_thread=True,
        summary="Delete one of the caller's presets",
        description="A derivative made with it stays; a service-wide preset: 404.",
        responses=problem_responses(401, 404, 422),
    )
    def delete_preset(
        self,
        name: PresetPathName,
        request: Request[User, Any, Any],
        delete_preset: NamedDependency[DeletePreset],
    ) -> None:
        delete_preset(PresetQuery(caller(request).id, name))
