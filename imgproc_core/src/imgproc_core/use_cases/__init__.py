"""Use cases: what the service does, one class each, written against the ports only.

Each takes its ports through ``__init__`` and does its work in ``__call__`` with an immutable
command; the shells build them from the container and map their domain errors.
"""

from imgproc_core.use_cases.auth import (
    Authenticate,
    AuthenticateCommand,
    LogIn,
    LogInCommand,
    RegisterUser,
    RegisterUserCommand,
    Session,
)
from imgproc_core.use_cases.images import (
    MAX_PAGE_LIMIT,
    DeleteImage,
    Download,
    GetDownloadUrl,
    GetImageMetadata,
    ImageQuery,
    ListImages,
    ListImagesQuery,
    UploadImage,
    UploadImageCommand,
    download_cache_key,
    owned_image,
)
from imgproc_core.use_cases.relay import RelayOutbox
from imgproc_core.use_cases.transforms import (
    JobOutcome,
    JobOutcomeStatus,
    ProcessTransformJob,
    RequestTransform,
    RequestTransformCommand,
    derived_filename,
)
from imgproc_core.use_cases.worker import (
    MAX_BACKOFF_SECONDS,
    GiveUpJob,
    GiveUpJobCommand,
    RunNextJob,
    describe_error,
)

__all__ = [
    "MAX_BACKOFF_SECONDS",
    "MAX_PAGE_LIMIT",
    "Authenticate",
    "AuthenticateCommand",
    "DeleteImage",
    "Download",
    "GetDownloadUrl",
    "GetImageMetadata",
    "GiveUpJob",
    "GiveUpJobCommand",
    "ImageQuery",
    "JobOutcome",
    "JobOutcomeStatus",
    "ListImages",
    "ListImagesQuery",
    "LogIn",
    "LogInCommand",
    "ProcessTransformJob",
    "RegisterUser",
    "RegisterUserCommand",
    "RelayOutbox",
    "RequestTransform",
    "RequestTransformCommand",
    "RunNextJob",
    "Session",
    "UploadImage",
    "UploadImageCommand",
    "derived_filename",
    "describe_error",
    "download_cache_key",
    "owned_image",
]
