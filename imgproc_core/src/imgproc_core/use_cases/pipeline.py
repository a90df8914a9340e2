"""The render pipeline: what an image goes through on its way to a derived one, in one order.

1. :func:`admit_original`: the bytes of an original meet the size limit, then the codec's probe
   (type from the magic bytes, pixel and frame limits from the header, integrity).
2. :func:`plan_render`: the transformation is resolved against the source's format (its default
   output format and quality), and the output's size is checked against the limits, from the
   source's size alone.
3. :func:`render`: the codec applies the resolved transformation to the source's bytes.

The service runs the steps at three moments: :class:`~imgproc_core.use_cases.UploadImage`
admits, :class:`~imgproc_core.use_cases.RequestTransform` plans from the size recorded at
upload, and :class:`~imgproc_core.use_cases.ProcessTransformJob` renders. The command line's
batch transforms run them back to back (:func:`render_original`), so a local file meets the
same checks, in the same order, as an upload and its job.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgproc_core.domain.errors import ImageTooLarge
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Transformation, output_size
from imgproc_core.ports import EncodedImage, ImageCodec, ImageInfo

__all__ = ["RenderPlan", "admit_original", "plan_render", "render", "render_original"]


@dataclass(frozen=True, slots=True)
class RenderPlan:
    """A transformation resolved against its source, and the size of what it makes."""

    transformation: Transformation
    width: int
    height: int


def admit_original(data: bytes, probe: ImageCodec, limits: Limits) -> ImageInfo:
    """What ``data`` is, if it may be an original: :class:`ImageTooLarge` past the upload
    limit, else the errors of the codec's probe."""
    limit = limits.max_upload_bytes
    if len(data) > limit:
        raise ImageTooLarge(f"an upload is at most {limit} bytes", limit_bytes=limit)
    return probe.probe(data, limits)


def plan_render(
    transformation: Transformation,
    *,
    source_format: str,
    width: int,
    height: int,
    limits: Limits,
) -> RenderPlan:
    """``transformation`` resolved for a ``width`` x ``height`` source in ``source_format``
    (upright sizes); raises what :func:`~imgproc_core.domain.transformations.output_size`
    raises (a crop outside the source, an output past the limits)."""
    resolved = transformation.resolved(source_format)
    out_width, out_height = output_size(width, height, resolved, limits)
    return RenderPlan(resolved, out_width, out_height)


def render(
    codec: ImageCodec,
    data: bytes,
    transformation: Transformation,
    limits: Limits,
    *,
    watermark: bytes | None = None,
) -> EncodedImage:
    """The source's bytes with a resolved ``transformation`` applied."""
    return codec.transform(data, transformation, limits, watermark=watermark)


def render_original(
    data: bytes,
    transformation: Transformation,
    *,
    probe: ImageCodec,
    codec: ImageCodec,
    limits: Limits,
) -> EncodedImage:
    """Every step at once, for bytes that are not stored: ``probe`` admits them (in this
    process: it reads the header and little more), ``codec`` renders them (in worker processes
    when it is the process-pool codec)."""
    info = admit_original(data, probe, limits)
    plan = plan_render(
        transformation,
        source_format=info.format,
        width=info.width,
        height=info.height,
        limits=limits,
    )
    return render(codec, data, plan.transformation, limits)
