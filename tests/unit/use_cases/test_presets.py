"""Presets on the in-memory fakes: a user's own and the service's, resolved wherever a
transformation is taken, the user's shadowing the service's; presets-only mode; variants made
with an upload, in its transaction."""

from __future__ import annotations

from typing import Any

import pytest

from imgproc_core.adapters.memory import fake_image_bytes
from imgproc_core.container import Container
from imgproc_core.domain.errors import (
    InvalidInput,
    InvalidPresetName,
    InvalidTransformation,
    PresetNotFound,
    PresetsOnly,
    UnknownPreset,
)
from imgproc_core.domain.images import Image
from imgproc_core.domain.presets import Preset, PresetReference
from imgproc_core.domain.transformations import parse_transformation
from imgproc_core.testing import build_test_container, settings_for_tests
from imgproc_core.use_cases import (
    MAX_PRESETS_PER_USER,
    MAX_VARIANTS,
    CreateLinkCommand,
    LinkQuery,
    ListImagesQuery,
    PresetCommand,
    PresetQuery,
    RegisterUserCommand,
    RequestTransformCommand,
    UploadImageCommand,
)

THUMB = parse_transformation({"resize": {"width": 320}, "format": "webp"})
SMALL = parse_transformation({"resize": {"width": 100}})
PHOTO = fake_image_bytes("png", 640, 480)


def _container(**settings: Any) -> Container:
    return build_test_container(settings_for_tests(**settings))


@pytest.fixture
def container() -> Container:
    return _container()


def _user(container: Container, name: str) -> str:
    return container.register_user()(RegisterUserCommand(name, "correct horse")).user.id


@pytest.fixture
def alice(container: Container) -> str:
    return _user(container, "alice")


def _photo(container: Container, user_id: str) -> Image:
    image: Image = container.upload_image()(UploadImageCommand(user_id, "cat.png", PHOTO))
    return image


def _set(container: Container, user_id: str | None, name: str, spec: Any, **kw: Any) -> bool:
    transformation = parse_transformation(spec) if isinstance(spec, dict) else spec
    written = container.put_preset()(PresetCommand(user_id, name, transformation, **kw))
    return written.created


def _transform(container: Container, user_id: str, image: Image, spec: Any) -> Image:
    derived: Image = container.request_transform()(RequestTransformCommand(user_id, image.id, spec))
    return derived


def _jobs(container: Container) -> int:
    with container.unit_of_work() as uow:
        return uow.jobs.pending_count()


def test_a_preset_is_made_replaced_listed_and_deleted(container: Container, alice: str) -> None:
    assert _set(container, alice, "thumb", THUMB)
    assert not _set(container, alice, "thumb", SMALL, eager=True)
    _set(container, None, "banner", THUMB)

    listed = container.list_presets()(PresetQuery(alice))
    assert [(p.name, p.user_id, p.eager) for p in listed] == [
        ("thumb", alice, True),
        ("banner", None, False),
    ]
    assert listed[0].transformation == SMALL
    assert container.get_preset()(PresetQuery(alice, "banner")).service_wide

    container.delete_preset()(PresetQuery(alice, "thumb"))
    with pytest.raises(PresetNotFound):
        container.get_preset()(PresetQuery(alice, "thumb"))
    # The service's is the operators' to delete, not a user's.
    with pytest.raises(PresetNotFound):
        container.delete_preset()(PresetQuery(alice, "banner"))


@pytest.mark.parametrize("name", ["", "Thumb", "a b", "thumb!", "x" * 65, "ünï", "../etc"])
def test_a_preset_name_is_1_to_64_of_a_few_characters(
    container: Container, alice: str, name: str
) -> None:
    with pytest.raises(InvalidPresetName):
        _set(container, alice, name, THUMB)


def test_a_preset_does_something(container: Container, alice: str) -> None:
    with pytest.raises(InvalidTransformation):
        _set(container, alice, "nothing", parse_transformation({"rotate": 0, "blur": 0}))


def test_a_user_keeps_a_bounded_number_of_presets(container: Container, alice: str) -> None:
    for n in range(MAX_PRESETS_PER_USER):
        _set(container, alice, f"p{n}", THUMB)
    with pytest.raises(InvalidInput) as refused:
        _set(container, alice, "one-more", THUMB)
    assert refused.value.field == "name"
    # Replacing one is not one more; the service's are not counted.
    assert not _set(container, alice, "p0", SMALL)
    assert _set(container, None, "one-more", THUMB)


def test_a_preset_and_its_transformation_written_out_are_one_derivative(
    container: Container, alice: str
) -> None:
    photo = _photo(container, alice)
    _set(container, alice, "thumb", THUMB)

    through_preset = _transform(container, alice, photo, PresetReference("thumb"))
    written_out = _transform(container, alice, photo, THUMB)

    assert through_preset.id == written_out.id
    assert through_preset.transformation == THUMB.resolved("png")
    assert _jobs(container) == 1


def test_a_users_preset_shadows_the_services(container: Container, alice: str) -> None:
    bob = _user(container, "bob")
    _set(container, None, "thumb", SMALL)
    _set(container, alice, "thumb", THUMB)

    for_alice = _transform(container, alice, _photo(container, alice), PresetReference("thumb"))
    for_bob = _transform(container, bob, _photo(container, bob), PresetReference("thumb"))

    assert for_alice.format == "webp"
    assert (for_bob.format, for_bob.width) == ("png", 100)


def test_an_unknown_preset_is_refused_naming_the_field(container: Container, alice: str) -> None:
    bob = _user(container, "bob")
    _set(container, bob, "mine", THUMB)
    photo = _photo(container, alice)
    for name in ("nope", "mine"):  # another user's preset is no preset of alice's
        with pytest.raises(UnknownPreset) as refused:
            _transform(container, alice, photo, PresetReference(name))
        assert refused.value.field == "preset"
    assert _jobs(container) == 0


def test_presets_only_takes_the_services_presets_and_nothing_else() -> None:
    container = _container(presets_only=True)
    alice = _user(container, "alice")
    photo = _photo(container, alice)
    _set(container, None, "thumb", THUMB)
    _set(container, None, "shared", SMALL)
    with container.unit_of_work() as uow:
        # Made before the mode was on: it no longer applies.
        now = container.clock().now()
        uow.presets.put(Preset("mine", THUMB, now, now, user_id=alice))
        uow.presets.put(Preset("shared", THUMB, now, now, user_id=alice))
        uow.commit()

    with pytest.raises(PresetsOnly):
        _transform(container, alice, photo, SMALL)
    with pytest.raises(PresetsOnly):
        _transform(container, alice, photo, PresetReference("mine"))
    with pytest.raises(PresetsOnly):
        _set(container, alice, "another", THUMB)
    with pytest.raises(PresetsOnly):
        container.create_link()(CreateLinkCommand(alice, photo.id, SMALL))

    assert _transform(container, alice, photo, PresetReference("thumb")).format == "webp"
    # The service's preset of that name, not the user's.
    assert _transform(container, alice, photo, PresetReference("shared")).width == 100
    link = container.create_link()(CreateLinkCommand(alice, photo.id, PresetReference("thumb")))
    assert link.transformation == THUMB
    # A link to the image itself is no transformation.
    assert container.create_link()(CreateLinkCommand(alice, photo.id)).transformation is None


def test_a_link_is_pinned_to_what_its_preset_said_when_it_was_made(
    container: Container, alice: str
) -> None:
    photo = _photo(container, alice)
    _set(container, alice, "thumb", THUMB)
    link = container.create_link()(CreateLinkCommand(alice, photo.id, PresetReference("thumb")))
    _set(container, alice, "thumb", SMALL)

    listed = container.list_links()(LinkQuery(alice, photo.id))

    assert link.transformation == THUMB
    assert [view.transformation for view in listed] == [THUMB]


def test_an_upload_queues_its_variants_in_its_own_transaction(
    container: Container, alice: str
) -> None:
    _set(container, alice, "thumb", THUMB)
    _set(container, None, "small", SMALL)

    upload = container.upload_image().upload(
        UploadImageCommand(alice, "cat.png", PHOTO, variants=("thumb, small", "thumb"))
    )

    assert [(v.preset, v.image.status.value) for v in upload.variants] == [
        ("thumb", "PENDING"),
        ("small", "PENDING"),
    ]
    assert [v.image.source_id for v in upload.variants] == [upload.image.id] * 2
    assert _jobs(container) == 2
    # The same derivatives POST /transform would make.
    assert _transform(container, alice, upload.image, THUMB).id == upload.variants[0].image.id


def test_an_upload_with_a_variant_it_cannot_have_stores_nothing(
    container: Container, alice: str
) -> None:
    _set(
        container,
        alice,
        "huge",
        parse_transformation({"crop": {"x": 0, "y": 0, "width": 5000, "height": 10}}),
    )
    for variants, code in (
        (("nope",), "unknown_preset"),
        (("huge",), "crop_outside_image"),
        (("Bad!",), "invalid_preset_name"),
    ):
        with pytest.raises(InvalidInput) as refused:
            container.upload_image().upload(
                UploadImageCommand(alice, "cat.png", PHOTO, variants=variants)
            )
        assert (refused.value.code, refused.value.field) == (code, "variants")
    assert container.list_images()(ListImagesQuery(alice)).total == 0
    assert container.blob_storage().keys() == []
    assert _jobs(container) == 0


def test_an_upload_asks_for_a_bounded_number_of_variants(container: Container, alice: str) -> None:
    names = ",".join(f"v{n}" for n in range(MAX_VARIANTS + 1))
    with pytest.raises(InvalidInput) as refused:
        container.upload_image().upload(
            UploadImageCommand(alice, "cat.png", PHOTO, variants=(names,))
        )
    assert refused.value.field == "variants"


def test_eager_presets_are_made_for_every_upload_of_their_user(
    container: Container, alice: str
) -> None:
    bob = _user(container, "bob")
    _set(container, alice, "thumb", THUMB, eager=True)
    _set(container, alice, "small", SMALL, eager=True)
    _set(container, alice, "lazy", parse_transformation({"rotate": 90}))
    # Does not fit a 640x480 photograph: left out, the upload goes on.
    _set(
        container,
        alice,
        "huge",
        parse_transformation({"crop": {"x": 0, "y": 0, "width": 5000, "height": 10}}),
        eager=True,
    )

    upload = container.upload_image().upload(
        UploadImageCommand(alice, "cat.png", PHOTO, variants=("thumb",))
    )
    other = container.upload_image().upload(UploadImageCommand(bob, "cat.png", PHOTO))

    assert [v.preset for v in upload.variants] == ["thumb", "small"]
    assert other.variants == ()
    assert _jobs(container) == 2


def test_presets_only_leaves_a_users_eager_presets_out() -> None:
    container = _container()
    alice = _user(container, "alice")
    _set(container, alice, "thumb", THUMB, eager=True)
    _set(container, None, "small", SMALL)
    strict = _container(presets_only=True)
    strict.unit_of_work.override(container.unit_of_work)
    strict.blob_storage.override(container.blob_storage)

    upload = strict.upload_image().upload(
        UploadImageCommand(alice, "cat.png", PHOTO, variants=("small",))
    )

    assert [v.preset for v in upload.variants] == ["small"]
