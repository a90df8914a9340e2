"""Contract of ImageRepository, run against every implementation in IMPLEMENTATIONS.

Users and source images are stored before what refers to them, so that adapters with foreign
keys pass too. A test never depends on whether deleting an original removes its derivatives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest

from imgproc_core.adapters.memory import ManualClock
from imgproc_core.domain.errors import Conflict, ImageNotFound
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus
from imgproc_core.domain.transformations import (
    Crop,
    Resize,
    Transformation,
    Watermark,
    derived_image_id,
)
from imgproc_core.domain.users import User
from imgproc_core.ports.persistence import UnitOfWork, UnitOfWorkFactory

UserBuilder = Callable[..., User]
ImageBuilder = Callable[..., Image]

#: Every kind of field a transformation has: nested values, enums, floats, defaults left out.
RICH_TRANSFORMATION = Transformation(
    resize=Resize(width=800, height=600, fit="cover"),
    crop=Crop(x=10, y=20, width=1200, height=900),
    rotate=90,
    flip=True,
    grayscale=True,
    blur=1.5,
    sharpen=0.25,
    watermark=Watermark(text="(c) me", position="top-left", opacity=0.25, scale=0.5),
    format="webp",
    quality=70,
)


@pytest.fixture
def owners(uow_factory: UnitOfWorkFactory, make_user: UserBuilder) -> tuple[User, User]:
    alice, bob = make_user(username="alice"), make_user(username="bob")
    with uow_factory() as uow:
        uow.users.add(alice)
        uow.users.add(bob)
        uow.commit()
    return alice, bob


def _add(uow_factory: UnitOfWorkFactory, *images: Image) -> None:
    with uow_factory() as uow:
        for image in images:
            uow.images.add(image)
        uow.commit()


def _commit(uow_factory: UnitOfWorkFactory, change: Callable[[UnitOfWork], object]) -> None:
    """One unit of work that makes ``change`` and commits; whichever of the two raises."""
    with uow_factory() as uow:
        change(uow)
        uow.commit()


def _get(uow_factory: UnitOfWorkFactory, image_id: str) -> Image | None:
    with uow_factory() as uow:
        return uow.images.get(image_id)


def _derivative(make_image: ImageBuilder, source: Image, **overrides: object) -> Image:
    transformation = RICH_TRANSFORMATION.resolved(source.format)
    image_id = derived_image_id(source.id, transformation)
    fields: dict[str, object] = {
        "id": image_id,
        "source_id": source.id,
        "transformation": transformation,
        "storage_key": f"{source.user_id}/{source.id}/{image_id}.webp",
        "mimetype": "image/webp",
        "format": "webp",
        "size_bytes": 0,
        "width": 600,
        "height": 800,
        "status": JobStatus.PENDING,
    }
    fields.update(overrides)
    return make_image(source.user_id, **fields)


def test_an_original_round_trips_every_field(
    uow_factory: UnitOfWorkFactory, owners: tuple[User, User], make_image: ImageBuilder
) -> None:
    alice, _ = owners
    original = make_image(
        alice.id,
        filename="été (1).png",
        mimetype="image/png",
        format="png",
        size_bytes=123_456_789,
        width=7,
        height=9,
        frames=12,
        attempts=0,
    )
    _add(uow_factory, original)

    stored = _get(uow_factory, original.id)

    assert stored == original
    assert stored is not None
    assert not stored.is_transformed
    assert stored.transformation is None
    assert stored.created_at.utcoffset() == timedelta(0)
    assert stored.updated_at.microsecond == original.updated_at.microsecond


def test_a_derivative_round_trips_its_transformation_and_failure(
    uow_factory: UnitOfWorkFactory, owners: tuple[User, User], make_image: ImageBuilder
) -> None:
    alice, _ = owners
    source = make_image(alice.id)
    derivative = _derivative(
        make_image,
        source,
        status=JobStatus.FAILED,
        failure_reason="corrupt source: truncated JPEG",
        attempts=3,
    )
    _add(uow_factory, source)
    _add(uow_factory, derivative)

    stored = _get(uow_factory, derivative.id)

    assert stored == derivative
    assert stored is not None
    assert stored.is_transformed
    assert stored.source_id == source.id
    assert stored.transformation == RICH_TRANSFORMATION.resolved("jpeg")
    assert stored.status is JobStatus.FAILED


def test_an_unknown_image_is_none(uow_factory: UnitOfWorkFactory) -> None:
    assert _get(uow_factory, "0" * 32) is None


def test_images_go_in_and_come_out_as_copies(
    uow_factory: UnitOfWorkFactory, owners: tuple[User, User], make_image: ImageBuilder
) -> None:
    image = make_image(owners[0].id)
    _add(uow_factory, image)
    image.filename = "changed-after-add.jpg"

    with uow_factory() as uow:
        first = uow.images.get(image.id)
        assert first is not None
        first.status = JobStatus.FAILED
        second = uow.images.get(image.id)

    assert second is not None
    assert second is not first
    assert second.filename != "changed-after-add.jpg"
    assert second.status is JobStatus.READY


def test_a_duplicate_id_is_a_conflict(
    uow_factory: UnitOfWorkFactory, owners: tuple[User, User], make_image: ImageBuilder
) -> None:
    alice, _ = owners
    first = make_image(alice.id)
    _add(uow_factory, first)

    with pytest.raises(Conflict):
        _commit(uow_factory, lambda uow: uow.images.add(replace(first, filename="other.jpg")))

    assert _get(uow_factory, first.id) == first


def test_a_duplicate_id_from_a_concurrent_commit_is_a_conflict(
    uow_factory: UnitOfWorkFactory, owners: tuple[User, User], make_image: ImageBuilder
) -> None:
    alice, _ = owners
    winner = make_image(alice.id)
    loser = replace(winner, filename="late.jpg")

    def race() -> None:
        with uow_factory() as late:
            late.images.add(loser)
            _add(uow_factory, winner)
            late.commit()

    with pytest.raises(Conflict):
        race()

    assert _get(uow_factory, winner.id) == winner


def test_update_writes_back_every_mutable_field(
    uow_factory: UnitOfWorkFactory,
    owners: tuple[User, User],
    make_image: ImageBuilder,
    clock: ManualClock,
) -> None:
    alice, _ = owners
    source = make_image(alice.id)
    derivative = _derivative(make_image, source)
    _add(uow_factory, source, derivative)

    with uow_factory() as uow:
        stored = uow.images.get(derivative.id)
        assert stored is not None
        stored.start_processing(clock.advance(5))
        stored.finish(size_bytes=4321, width=599, height=799, frames=3, now=clock.advance(5))
        stored.filename = "renamed.webp"
        uow.images.update(stored)
        uow.commit()

    reread = _get(uow_factory, derivative.id)
    assert reread == stored
    assert reread is not None
    assert reread.status is JobStatus.READY
    assert (reread.size_bytes, reread.width, reread.height, reread.frames) == (4321, 599, 799, 3)
    assert reread.attempts == 1
    assert reread.updated_at == clock.now()
    assert reread.created_at == derivative.created_at


def test_update_of_an_unknown_image_raises(
    uow_factory: UnitOfWorkFactory, owners: tuple[User, User], make_image: ImageBuilder
) -> None:
    ghost = make_image(owners[0].id)
    with pytest.raises(ImageNotFound):
        _commit(uow_factory, lambda uow: uow.images.update(ghost))
    assert _get(uow_factory, ghost.id) is None


def test_delete_removes_only_that_image(
    uow_factory: UnitOfWorkFactory, owners: tuple[User, User], make_image: ImageBuilder
) -> None:
    alice, bob = owners
    source = make_image(alice.id)
    first = _derivative(make_image, source)
    second = _derivative(make_image, source, id="e" * 32)
    bobs = make_image(bob.id)
    _add(uow_factory, source, bobs)
    _add(uow_factory, first, second)

    with uow_factory() as uow:
        uow.images.delete(first.id)
        uow.commit()

    assert _get(uow_factory, first.id) is None
    assert _get(uow_factory, second.id) == second
    assert _get(uow_factory, source.id) == source
    assert _get(uow_factory, bobs.id) == bobs


def test_deleting_an_unknown_image_is_not_an_error(
    uow_factory: UnitOfWorkFactory, owners: tuple[User, User], make_image: ImageBuilder
) -> None:
    image = make_image(owners[0].id)
    _add(uow_factory, image)
    with uow_factory() as uow:
        uow.images.delete("0" * 32)
        uow.images.delete(image.id)
        uow.images.delete(image.id)
        uow.commit()
    assert _get(uow_factory, image.id) is None


def test_list_for_user_pages_newest_first_with_a_total(
    uow_factory: UnitOfWorkFactory,
    owners: tuple[User, User],
    make_image: ImageBuilder,
    clock: ManualClock,
) -> None:
    alice, bob = owners
    originals = [make_image(alice.id) for _ in range(4)]
    same_moment = clock.now() + timedelta(days=3)
    # Images created at the same moment come by descending id.
    twins = [
        make_image(alice.id, id="a" * 32, created_at=same_moment, updated_at=same_moment),
        make_image(alice.id, id="b" * 32, created_at=same_moment, updated_at=same_moment),
    ]
    _add(uow_factory, *reversed(originals), *twins, make_image(bob.id), make_image(bob.id))
    newest_first = [twins[1], twins[0], *reversed(originals)]

    with uow_factory() as uow:
        pages = [uow.images.list_for_user(alice.id, offset=o, limit=4) for o in (0, 4, 8)]

    assert [list(items) for items, _ in pages] == [newest_first[:4], newest_first[4:], []]
    assert [total for _, total in pages] == [6, 6, 6]


def test_list_for_user_can_leave_out_derivatives(
    uow_factory: UnitOfWorkFactory, owners: tuple[User, User], make_image: ImageBuilder
) -> None:
    alice, _ = owners
    older, newer = make_image(alice.id), make_image(alice.id)
    _add(uow_factory, older, newer)
    derivative = _derivative(make_image, older)
    _add(uow_factory, derivative)

    with uow_factory() as uow:
        everything, total = uow.images.list_for_user(alice.id, offset=0, limit=10)
        originals, originals_total = uow.images.list_for_user(
            alice.id, offset=0, limit=10, originals_only=True
        )
        first_original, _ = uow.images.list_for_user(
            alice.id, offset=0, limit=1, originals_only=True
        )

    assert [image.id for image in everything] == [derivative.id, newer.id, older.id]
    assert total == 3
    assert [image.id for image in originals] == [newer.id, older.id]
    assert originals_total == 2
    assert [image.id for image in first_original] == [newer.id]


def test_list_for_a_user_without_images_is_empty(
    uow_factory: UnitOfWorkFactory, owners: tuple[User, User], make_image: ImageBuilder
) -> None:
    alice, bob = owners
    _add(uow_factory, make_image(alice.id))
    with uow_factory() as uow:
        items, total = uow.images.list_for_user(bob.id, offset=0, limit=10)
    assert (list(items), total) == ([], 0)


def test_list_derivatives_gives_one_source_s_derivatives_oldest_first(
    uow_factory: UnitOfWorkFactory, owners: tuple[User, User], make_image: ImageBuilder
) -> None:
    alice, _ = owners
    source, other_source = make_image(alice.id), make_image(alice.id)
    _add(uow_factory, source, other_source)
    first = _derivative(make_image, source, id="c" * 32)
    second = _derivative(make_image, source, id="b" * 32)
    other = _derivative(make_image, other_source)
    _add(uow_factory, second, other, first)

    with uow_factory() as uow:
        found = uow.images.list_derivatives(source.id)
        none = uow.images.list_derivatives(first.id)

    assert list(found) == [first, second]
    assert list(none) == []


def test_list_and_count_by_status(
    uow_factory: UnitOfWorkFactory, owners: tuple[User, User], make_image: ImageBuilder
) -> None:
    alice, bob = owners
    source = make_image(alice.id)
    _add(uow_factory, source)
    pending = [
        _derivative(make_image, source, id=f"{n:x}" * 32, status=JobStatus.PENDING)
        for n in (3, 1, 2)
    ]
    failed = _derivative(make_image, source, id="d" * 32, status=JobStatus.FAILED)
    _add(uow_factory, *pending, failed, make_image(bob.id))

    with uow_factory() as uow:
        all_pending = uow.images.list_by_status(JobStatus.PENDING)
        two_pending = uow.images.list_by_status(JobStatus.PENDING, limit=2)
        processing = uow.images.list_by_status(JobStatus.PROCESSING)
        counts = uow.images.count_by_status()

    assert list(all_pending) == pending
    assert list(two_pending) == pending[:2]
    assert list(processing) == []
    assert counts == {
        JobStatus.PENDING: 3,
        JobStatus.PROCESSING: 0,
        JobStatus.READY: 2,
        JobStatus.FAILED: 1,
    }


def test_count_by_status_follows_updates_and_deletes(
    uow_factory: UnitOfWorkFactory,
    owners: tuple[User, User],
    make_image: ImageBuilder,
    clock: ManualClock,
) -> None:
    alice, _ = owners
    source = make_image(alice.id)
    derivative = _derivative(make_image, source)
    _add(uow_factory, source, derivative)

    with uow_factory() as uow:
        assert uow.images.count_by_status()[JobStatus.PENDING] == 1
        stored = uow.images.get(derivative.id)
        assert stored is not None
        stored.start_processing(clock.now())
        uow.images.update(stored)
        uow.images.delete(source.id)
        uow.commit()

    with uow_factory() as uow:
        counts = uow.images.count_by_status()
    assert counts[JobStatus.PENDING] == 0
    assert counts[JobStatus.READY] == 0
    assert counts[JobStatus.PROCESSING] == (1 if _get(uow_factory, derivative.id) else 0)


def test_list_derived_gives_every_job_oldest_first_or_those_in_one_status(
    uow_factory: UnitOfWorkFactory, owners: tuple[User, User], make_image: ImageBuilder
) -> None:
    alice, bob = owners
    alices, bobs = make_image(alice.id), make_image(bob.id)
    _add(uow_factory, alices, bobs)
    statuses = [JobStatus.FAILED, JobStatus.PENDING, JobStatus.READY, JobStatus.FAILED]
    derived = [
        _derivative(make_image, source, id=f"{n + 1:x}" * 32, status=status)
        for n, (source, status) in enumerate(
            zip([alices, bobs, alices, bobs], statuses, strict=True)
        )
    ]
    _add(uow_factory, *reversed(derived))

    with uow_factory() as uow:
        every = uow.images.list_derived()
        failed = uow.images.list_derived(status=JobStatus.FAILED)
        second_page = uow.images.list_derived(offset=1, limit=2)
        processing = uow.images.list_derived(status=JobStatus.PROCESSING)

    # Originals are not jobs, READY as they are.
    assert list(every) == derived
    assert list(failed) == [derived[0], derived[3]]
    assert list(second_page) == derived[1:3]
    assert list(processing) == []


def test_totals_count_originals_and_derivatives_with_their_bytes(
    uow_factory: UnitOfWorkFactory, owners: tuple[User, User], make_image: ImageBuilder
) -> None:
    with uow_factory() as uow:
        empty = uow.images.totals()
    assert (empty.originals, empty.original_bytes, empty.derived, empty.derived_bytes) == (
        0,
        0,
        0,
        0,
    )
    assert dict(empty.derived_by_status) == dict.fromkeys(JobStatus, 0)

    alice, bob = owners
    alices = make_image(alice.id, size_bytes=3_000_000_000)
    bobs = make_image(bob.id, size_bytes=1234)
    ready = _derivative(make_image, alices, id="a" * 32, status=JobStatus.READY, size_bytes=700)
    pending = _derivative(make_image, alices, id="b" * 32, status=JobStatus.PENDING)
    failed = _derivative(make_image, bobs, id="c" * 32, status=JobStatus.FAILED)
    _add(uow_factory, alices, bobs, ready, pending, failed)

    with uow_factory() as uow:
        totals = uow.images.totals()

    assert (totals.originals, totals.original_bytes) == (2, 3_000_001_234)
    assert (totals.derived, totals.derived_bytes) == (3, 700)
    assert dict(totals.derived_by_status) == {
        JobStatus.PENDING: 1,
        JobStatus.PROCESSING: 0,
        JobStatus.READY: 1,
        JobStatus.FAILED: 1,
    }


def test_an_images_transparency_reads_back(
    uow_factory: UnitOfWorkFactory, make_user: UserBuilder, make_image: ImageBuilder
) -> None:
    user = make_user()
    clear = make_image(user.id, transparent=True)
    opaque = make_image(user.id)
    with uow_factory() as uow:
        uow.users.add(user)
        uow.images.add(clear)
        uow.images.add(opaque)
        uow.commit()
    with uow_factory() as uow:
        assert [uow.images.get(image.id).transparent for image in (clear, opaque)] == [True, False]  # type: ignore[union-attr]
