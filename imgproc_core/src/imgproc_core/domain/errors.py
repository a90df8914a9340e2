"""Domain errors: what can go wrong, in the language of the domain.

Each shell maps these to its own language (an HTTP status, an exit code, a dead-letter reason) in
one place. ``code`` is a stable machine-readable name; the message is for people.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the core raises on purpose."""

    code = "domain_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- input that breaks a rule ------------------------------------------------------------------


class InvalidInput(DomainError):
    """A request that breaks a rule; ``field`` names the offending part when there is one."""

    code = "invalid_input"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidTransformation(InvalidInput):
    code = "invalid_transformation"


class InvalidUsername(InvalidInput):
    code = "invalid_username"


class InvalidPassword(InvalidInput):
    code = "invalid_password"


class InvalidPagination(InvalidInput):
    code = "invalid_pagination"


class CropOutsideImage(InvalidTransformation):
    code = "crop_outside_image"


class OutputTooLarge(InvalidTransformation):
    code = "output_too_large"


class WatermarkNotFound(InvalidTransformation):
    code = "watermark_not_found"


class UnknownPreset(InvalidTransformation):
    """``{"preset": NAME}`` names no preset of the caller's nor of the service's."""

    code = "unknown_preset"


class PresetsOnly(InvalidTransformation):
    """The service takes service-wide presets only (``IMGPROC_PRESETS_ONLY``)."""

    code = "presets_only"


class InvalidPresetName(InvalidInput):
    code = "invalid_preset_name"


# -- images that cannot be accepted --------------------------------------------------------------


class ImageRejected(DomainError):
    """An uploaded or stored image that the service refuses to decode or keep."""

    code = "image_rejected"


class UnsupportedImageType(ImageRejected):
    code = "unsupported_image_type"


class ImageTooLarge(ImageRejected):
    """More bytes than the upload limit."""

    code = "image_too_large"

    def __init__(self, message: str, limit_bytes: int) -> None:
        super().__init__(message)
        self.limit_bytes = limit_bytes


class DecompressionBomb(ImageRejected):
    """More pixels than the pixel limit, read from the header before any decoding."""

    code = "decompression_bomb"


class TooManyFrames(ImageRejected):
    code = "too_many_frames"


class CorruptImage(ImageRejected):
    """Truncated or otherwise undecodable data."""

    code = "corrupt_image"


# -- identity and access -------------------------------------------------------------------------


class UsernameTaken(DomainError):
    code = "username_taken"


class InvalidCredentials(DomainError):
    """Unknown user, wrong password or disabled account: one error for all three, on purpose."""

    code = "invalid_credentials"


class InvalidToken(DomainError):
    code = "invalid_token"


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# -- images and jobs -----------------------------------------------------------------------------


class NotFound(DomainError):
    code = "not_found"


class ImageNotFound(NotFound):
    """Unknown image, or an image that belongs to someone else: the two look the same."""

    code = "image_not_found"


class UserNotFound(NotFound):
    code = "user_not_found"


class LinkNotFound(NotFound):
    """Unknown, revoked or expired link, someone else's, or one whose image is gone: the
    reader cannot tell which."""

    code = "link_not_found"


class PresetNotFound(NotFound):
    code = "preset_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class ImageNotReady(DomainError):
    """A derived image whose job has not finished yet; ``status`` says where it is."""

    code = "image_not_ready"

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


class ImageProcessingFailed(DomainError):
    """A derived image whose job failed for good; the message says why."""

    code = "image_processing_failed"


class InvalidStateTransition(DomainError):
    code = "invalid_state_transition"


class Conflict(DomainError):
    """A write that collides with one already made (a duplicate key)."""

    code = "conflict"


class ProcessingTimeout(DomainError):
    """A job that ran past its time limit."""

    code = "processing_timeout"


class CodecCrashed(ProcessingTimeout):
    """The process rendering a job died before it answered (a crash, or killed for memory).

    Handled like a timeout, which is what callers that catch :class:`ProcessingTimeout` see: the
    job is retried with backoff and parked after its last attempt, so an input that kills the
    decoder every time cannot loop forever, and a death caused by the load of the moment does
    not fail an image for good.
    """

    code = "codec_crashed"


class DependencyUnavailable(DomainError):
    """A service the operation needs (database, storage, queue, cache) does not answer."""

    code = "dependency_unavailable"

    def __init__(self, message: str, dependency: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.dependency = dependency
        self.retry_after = retry_after


class BlobNotFound(NotFound):
    code = "blob_not_found"
