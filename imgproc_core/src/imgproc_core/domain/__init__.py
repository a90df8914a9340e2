"""The domain: entities, value objects and rules, with no I/O and no framework."""

from imgproc_core.domain.errors import *  # noqa: F403
from imgproc_core.domain.errors import DomainError
from imgproc_core.domain.formats import INPUT_FORMATS, MEDIA_TYPES, OUTPUT_FORMATS
from imgproc_core.domain.images import Image, Page, sanitize_filename
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import (
    Crop,
    Resize,
    Transformation,
    Watermark,
    canonical_form,
    derived_image_id,
    output_size,
    parse_transformation,
)
from imgproc_core.domain.users import User

__all__ = [
    "INPUT_FORMATS",
    "MEDIA_TYPES",
    "OUTPUT_FORMATS",
    "Crop",
    "DomainError",
    "Image",
    "JobStatus",
    "Limits",
    "Page",
    "Resize",
    "TransformJob",
    "Transformation",
    "User",
    "Watermark",
    "canonical_form",
    "derived_image_id",
    "output_size",
    "parse_transformation",
    "sanitize_filename",
]
