"""``/images``: upload, list, read, transform and delete the caller's images.

Every handler parses, calls one use case (its only dependency; the caller and the base URL of
links come from the request, see :mod:`imgproc_http.context`) and shapes its answer; errors are
mapped in :mod:`imgproc_http.errors`. Handlers run in worker threads: an upload is checked and
written to storage, the others query the database, and none of that may stall the event loop.
Another user's image is indistinguishable from a missing one: 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, MultipartBody, Parameter
from litestar.response import Redirect

from imgproc_core.domain import JobStatus, User
from imgproc_core.domain.errors import InvalidInput
from imgproc_core.domain.presets import parse_transformation_or_preset
from imgproc_core.use_cases import (
    MAX_PAGE_LIMIT,
    DeleteImage,
    GetDownloadUrl,
    GetImageMetadata,
    ImageQuery,
    ListImages,
    ListImagesQuery,
    RequestTransform,
    RequestTransformCommand,
    UploadImage,
    UploadImageCommand,
)
from imgproc_http.context import base_url, caller, job_signal
from imgproc_http.errors import NOT_READY_RESPONSE, TOO_LARGE_CODE_OPT, problem_responses
from imgproc_http.rate_limits import RATE_LIMIT_OPT
from imgproc_http.schemas import (
    JSON_BODY_LIMIT,
    ImageOut,
    ImagePage,
    TransformRequest,
    UploadOut,
)
from imgproc_http.security import AUTHENTICATED_OPT, BEARER_SCHEME

PageNumber = Annotated[int, Parameter(ge=1, le=1_000_000, description="1-based page number")]
PageSize = Annotated[int, Parameter(ge=1, le=MAX_PAGE_LIMIT, description="images per page")]
ImageId = FromPath[Annotated[str, Parameter(min_length=1, max_length=128)]]


@dataclass
class UploadForm:
    """``multipart/form-data`` with the image in the part named ``file``. Its type is read
    from its bytes; the part's content type and filename are not trusted (the filename is kept,
    sanitized, for display only)."""

    file: UploadFile
    #: Presets to make at once, comma-separated: their jobs are written with the upload.
    variants: str | None = None


def _is_a_file(target: Any) -> bool:
    return target is UploadFile


def _not_one_file(_: Any, value: Any) -> UploadFile:
    """What the upload's ``file`` is when it is not one file: Litestar hands the form's value
    to the type decoders as it found it, text (a part without a filename) or a list (several
    parts of that name), and only a file is one."""
    got = "several parts" if isinstance(value, list) else "a text field"
    raise InvalidInput(f"file: expected one file, with a filename; got {got}", field="file")


class ImagesController(Controller):
    path = "/images"
    tags = ["images"]
    opt = {AUTHENTICATED_OPT: True}
    security = [{BEARER_SCHEME: []}]

    @post(
        "/",
        status_code=201,
        sync_to_thread=True,
        opt={RATE_LIMIT_OPT: "upload", TOO_LARGE_CODE_OPT: "image_too_large"},
        type_decoders=[(_is_a_file, _not_one_file)],
        summary="Upload an image",
        # No request_max_body_size here: the app's limit is the upload limit (from settings).
        description=(
            "JPEG, PNG, WebP, GIF, AVIF, TIFF, BMP or HEIC, identified by its bytes. Too many "
            "bytes: 413 (refused while streaming); another type: 415; too many pixels or frames, "
            "truncated or corrupt: 422."
        ),
        responses=problem_responses(401, 413, 415, 422, 429),
    )
    def upload(
        self,
        data: MultipartBody[UploadForm],
        request: Request[User, Any, Any],
        upload_image: NamedDependency[UploadImage],
    ) -> UploadOut:
        payload = data.file.file.read()
        upload = upload_image.upload(
            UploadImageCommand(
                user_id=caller(request).id,
                filename=data.file.filename,
                data=payload,
                variants=(data.variants,) if data.variants else (),
            )
        )
        if upload.variants:
            job_signal(request).notify()
        return UploadOut.from_upload(upload, base_url(request))

    @get(
        "/",
        sync_to_thread=True,
        summary="List the caller's images, newest first",
        responses=problem_responses(401, 422),
    )
    def list_images(
        self,
        request: Request[User, Any, Any],
        list_images: NamedDependency[ListImages],
        page: PageNumber = 1,
        limit: PageSize = 10,
    ) -> ImagePage:
        found = list_images(ListImagesQuery(user_id=caller(request).id, page=page, limit=limit))
        return ImagePage.from_page(found, base_url(request))

    @get(
        "/{image_id:str}",
        status_code=307,
        sync_to_thread=True,
        summary="Download an image: a redirect to a short-lived signed URL",
        description=(
            "307 to the signed URL (`Cache-Control: no-store`). A derived image still being "
            "made: 202 with its status and `Retry-After`. One whose job failed for good: 409, "
            "with the reason in `detail`."
        ),
        responses={**problem_responses(401, 404, 409, 503), 202: NOT_READY_RESPONSE},
    )
    def download(
        self,
        image_id: ImageId,
        request: Request[User, Any, Any],
        get_download_url: NamedDependency[GetDownloadUrl],
    ) -> Redirect:
        found = get_download_url(ImageQuery(user_id=caller(request).id, image_id=image_id))
        return Redirect(found.url, status_code=307, headers={"Cache-Control": "no-store"})

    @get(
        "/{image_id:str}/metadata",
        sync_to_thread=True,
        summary="An image's metadata; for a derived image, its status and transformation",
        responses=problem_responses(401, 404),
    )
    def metadata(
        self,
        image_id: ImageId,
        request: Request[User, Any, Any],
        get_image_metadata: NamedDependency[GetImageMetadata],
    ) -> ImageOut:
        image = get_image_metadata(ImageQuery(user_id=caller(request).id, image_id=image_id))
        return ImageOut.from_image(image, base_url(request))

    @post(
        "/{image_id:str}/transform",
        status_code=200,
        sync_to_thread=True,
        request_max_body_size=JSON_BODY_LIMIT,
        opt={RATE_LIMIT_OPT: "transform"},
        summary="Ask for a derived image",
        description=(
            "Answers at once with the derived image's entry, PENDING while a worker makes it "
            "(or READY when that exact derivative exists: the same request twice is one job). "
            "Poll its metadata, or GET it until it redirects."
        ),
        responses=problem_responses(401, 404, 422, 429),
    )
    def transform(
        self,
        image_id: ImageId,
        data: JSONBody[TransformRequest],
        request: Request[User, Any, Any],
        request_transform: NamedDependency[RequestTransform],
    ) -> ImageOut:
        transformation = parse_transformation_or_preset(data.to_mapping())
        image = request_transform(
            RequestTransformCommand(
                user_id=caller(request).id, image_id=image_id, transformation=transformation
            )
        )
        if image.status is JobStatus.PENDING:
            job_signal(request).notify()
        return ImageOut.from_image(image, base_url(request))

    @delete(
        "/{image_id:str}",
        status_code=204,
        sync_to_thread=True,
        summary="Delete an image; an original takes its derived images with it",
        responses=problem_responses(401, 404),
    )
    def delete_image(
        self,
        image_id: ImageId,
        request: Request[User, Any, Any],
        delete_image: NamedDependency[DeleteImage],
    ) -> None:
        delete_image(ImageQuery(user_id=caller(request).id, image_id=image_id))
