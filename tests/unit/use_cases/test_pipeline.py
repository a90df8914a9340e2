"""The render pipeline: an upload, its request and its job take the same steps, in the same
order, as one file through the command line's batch."""

from __future__ import annotations

import pytest

from imgproc_core.adapters.memory import InMemoryBlobStorage, InMemoryImageCodec, fake_image_bytes
from imgproc_core.domain.errors import (
    CropOutsideImage,
    DomainError,
    ImageTooLarge,
    OutputTooLarge,
    UnsupportedImageType,
)
from imgproc_core.domain.jobs import TransformJob
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Crop, Resize, Transformation
from imgproc_core.use_cases import (
    ProcessTransformJob,
    RequestTransform,
    RequestTransformCommand,
    UploadImage,
    UploadImageCommand,
)
from imgproc_core.use_cases.pipeline import admit_original, plan_render, render_original

CASES = [
    Transformation(resize=Resize(width=100)),
    Transformation(crop=Crop(x=10, y=10, width=50, height=40), format="webp"),
    Transformation(rotate=450, grayscale=True),
    Transformation(resize=Resize(width=120, height=120, fit="cover"), format="jpeg", quality=70),
]


def test_an_original_past_the_upload_limit_is_refused_before_the_probe(limits: Limits) -> None:
    data = b"x" * (limits.max_upload_bytes + 1)
    with pytest.raises(ImageTooLarge) as raised:
        admit_original(data, InMemoryImageCodec(), limits)
    assert raised.value.limit_bytes == limits.max_upload_bytes
    with pytest.raises(UnsupportedImageType):
        admit_original(b"x" * limits.max_upload_bytes, InMemoryImageCodec(), limits)


def test_a_plan_resolves_against_the_source_and_checks_the_size(limits: Limits) -> None:
    plan = plan_render(
        Transformation(resize=Resize(width=100)),
        source_format="tiff",
        width=400,
        height=300,
        limits=limits,
    )
    assert (plan.transformation.output_format, plan.width, plan.height) == ("png", 100, 75)
    with pytest.raises(CropOutsideImage):
        plan_render(
            Transformation(crop=Crop(x=390, y=0, width=20, height=20)),
            source_format="png",
            width=400,
            height=300,
            limits=limits,
        )
    with pytest.raises(OutputTooLarge):
        plan_render(
            Transformation(resize=Resize(width=limits.max_output_side + 1)),
            source_format="png",
            width=400,
            height=300,
            limits=limits,
        )


@pytest.mark.parametrize("transformation", CASES, ids=repr)
def test_one_file_at_once_gives_what_an_upload_and_its_job_give(
    transformation: Transformation,
    upload_image: UploadImage,
    request_transform: RequestTransform,
    process: ProcessTransformJob,
    storage: InMemoryBlobStorage,
    codec: InMemoryImageCodec,
    limits: Limits,
    alice: str,
) -> None:
    data = fake_image_bytes("png", 400, 300)

    at_once = render_original(data, transformation, probe=codec, codec=codec, limits=limits)

    original = upload_image(UploadImageCommand(alice, "a.png", data))
    derived = request_transform(RequestTransformCommand(alice, original.id, transformation))
    assert derived.source_id is not None
    process(TransformJob(image_id=derived.id, source_id=derived.source_id, user_id=alice))
    assert storage.get(derived.storage_key) == at_once.data
    assert (derived.format, derived.width, derived.height) == (
        at_once.format,
        at_once.width,
        at_once.height,
    )


@pytest.mark.parametrize(
    "data",
    [fake_image_bytes("png", 4000, 4000), b"%PDF-1.7", fake_image_bytes("png", 400, 300)[:-3]],
    ids=["bomb", "not-an-image", "truncated"],
)
def test_one_file_at_once_is_refused_as_its_upload_is(
    data: bytes,
    upload_image: UploadImage,
    codec: InMemoryImageCodec,
    limits: Limits,
    alice: str,
) -> None:
    transformation = Transformation(resize=Resize(width=100))
    with pytest.raises(DomainError) as at_once:
        render_original(data, transformation, probe=codec, codec=codec, limits=limits)
    with pytest.raises(DomainError) as uploaded:
        upload_image(UploadImageCommand(alice, "a.png", data))
    assert type(at_once.value) is type(uploaded.value)
