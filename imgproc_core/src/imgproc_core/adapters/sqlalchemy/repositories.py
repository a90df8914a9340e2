"""The user and image repositories over one SQLAlchemy session (the unit of work's)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from imgproc_core.adapters.sqlalchemy.errors import translated_errors
from imgproc_core.adapters.sqlalchemy.mapping import (
    SERVICE_OWNER,
    copy_image_to_row,
    copy_user_to_row,
    image_from_row,
    image_to_row,
    link_from_row,
    link_to_row,
    preset_from_row,
    preset_to_row,
    user_from_row,
    user_to_row,
)
from imgproc_core.adapters.sqlalchemy.models import ImageRow, LinkRow, PresetRow, UserRow
from imgproc_core.domain.errors import ImageNotFound, UserNotFound
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus
from imgproc_core.domain.links import Link
from imgproc_core.domain.presets import Preset
from imgproc_core.domain.users import User
from imgproc_core.ports.persistence import ImageTotals


class SqlAlchemyUserRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, user: User) -> None:
        # Written at the next flush (a query in this unit of work, or the commit): a row
        # inserted now would hold the name's index entry, and a concurrent registration would
        # wait on it instead of one of the two failing cleanly.
        self._session.add(user_to_row(user))

    def get(self, user_id: str) -> User | None:
        with translated_errors():
            row = self._session.get(UserRow, user_id)
        return user_from_row(row) if row is not None else None

    def get_by_username(self, username: str) -> User | None:
        with translated_errors():
            row = self._session.scalars(
                select(UserRow).where(UserRow.username == username)
            ).one_or_none()
        return user_from_row(row) if row is not None else None

    def update(self, user: User) -> None:
        with translated_errors():
            row = self._session.get(UserRow, user.id)
            if row is None:
                raise UserNotFound(f"no user {user.id}")
            copy_user_to_row(user, row)

    def list(self, *, offset: int = 0, limit: int = 100) -> Sequence[User]:
        with translated_errors():
            rows = self._session.scalars(
                select(UserRow).order_by(UserRow.created_at, UserRow.id).offset(offset).limit(limit)
            ).all()
        return [user_from_row(row) for row in rows]

    def count(self, *, disabled: bool | None = None) -> int:
        query = select(func.count()).select_from(UserRow)
        if disabled is not None:
            query = query.where(UserRow.disabled.is_(disabled))
        with translated_errors():
            count = self._session.scalar(query)
        return count or 0


class SqlAlchemyImageRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, image: Image) -> None:
        self._session.add(image_to_row(image))

    def get(self, image_id: str) -> Image | None:
        with translated_errors():
            row = self._session.get(ImageRow, image_id)
        return image_from_row(row) if row is not None else None

    def update(self, image: Image) -> None:
        with translated_errors():
            row = self._session.get(ImageRow, image.id)
            if row is None:
                raise ImageNotFound(f"no image {image.id}")
            copy_image_to_row(image, row)

    def delete(self, image_id: str) -> None:
        with translated_errors():
            self._session.execute(delete(ImageRow).where(ImageRow.id == image_id))

    def list_for_user(
        self, user_id: str, *, offset: int, limit: int, originals_only: bool = False
    ) -> tuple[Sequence[Image], int]:
        mine = [ImageRow.user_id == user_id]
        if originals_only:
            mine.append(ImageRow.source_id.is_(None))
        page = (
            select(ImageRow)
            .where(*mine)
            .order_by(ImageRow.created_at.desc(), ImageRow.id.desc())
            .offset(offset)
            .limit(limit)
        )
        with translated_errors():
            rows = self._session.scalars(page).all()
            total = self._session.scalar(select(func.count()).select_from(ImageRow).where(*mine))
        return [image_from_row(row) for row in rows], total or 0

    def list_derivatives(self, source_id: str) -> Sequence[Image]:
        query = (
            select(ImageRow)
            .where(ImageRow.source_id == source_id)
            .order_by(ImageRow.created_at, ImageRow.id)
        )
        with translated_errors():
            rows = self._session.scalars(query).all()
        return [image_from_row(row) for row in rows]

    def list_by_status(self, status: JobStatus, *, limit: int = 100) -> Sequence[Image]:
        query = (
            select(ImageRow)
            .where(ImageRow.status == status.value)
            .order_by(ImageRow.created_at, ImageRow.id)
            .limit(limit)
        )
        with translated_errors():
            rows = self._session.scalars(query).all()
        return [image_from_row(row) for row in rows]

    def count_by_status(self) -> dict[JobStatus, int]:
        query = select(ImageRow.status, func.count()).group_by(ImageRow.status)
        with translated_errors():
            rows = self._session.execute(query).all()
        found = {JobStatus(status): count for status, count in rows}
        return {status: found.get(status, 0) for status in JobStatus}

    def list_derived(
        self, *, status: JobStatus | None = None, offset: int = 0, limit: int = 100
    ) -> Sequence[Image]:
        query = select(ImageRow).where(ImageRow.source_id.is_not(None))
        if status is not None:
            query = query.where(ImageRow.status == status.value)
        query = query.order_by(ImageRow.created_at, ImageRow.id).offset(offset).limit(limit)
        with translated_errors():
            rows = self._session.scalars(query).all()
        return [image_from_row(row) for row in rows]

    def totals(self) -> ImageTotals:
        is_original = ImageRow.source_id.is_(None).label("is_original")
        query = select(
            is_original,
            ImageRow.status,
            func.count(),
            func.coalesce(func.sum(ImageRow.size_bytes), 0),
        ).group_by(is_original, ImageRow.status)
        with translated_errors():
            rows = self._session.execute(query).all()
        originals = original_bytes = derived = derived_bytes = 0
        by_status = dict.fromkeys(JobStatus, 0)
        for original, status, count, size in rows:
            # PostgreSQL sums a bigint column as a numeric, which arrives as a Decimal.
            if original:
                originals += count
                original_bytes += int(size)
            else:
                derived += count
                derived_bytes += int(size)
                by_status[JobStatus(status)] += count
        return ImageTotals(
            originals=originals,
            original_bytes=original_bytes,
            derived=derived,
            derived_bytes=derived_bytes,
            derived_by_status=by_status,
        )


class SqlAlchemyLinkRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, link: Link) -> None:
        with translated_errors():
            if self._session.get(ImageRow, link.image_id) is None:
                raise ImageNotFound(f"no image with id {link.image_id}")
            self._session.add(link_to_row(link))
            self._session.flush()

    def get(self, link_id: str) -> Link | None:
        with translated_errors():
            row = self._session.get(LinkRow, link_id)
        return link_from_row(row) if row is not None else None

    def get_with_image(self, link_id: str) -> tuple[Link, Image] | None:
        with translated_errors():
            found = self._session.execute(
                select(LinkRow, ImageRow)
                .join(ImageRow, ImageRow.id == LinkRow.image_id)
                .where(LinkRow.id == link_id)
            ).first()
        if found is None:
            return None
        link_row, image_row = found
        return link_from_row(link_row), image_from_row(image_row)

    def list_for_image(self, image_id: str) -> Sequence[Link]:
        with translated_errors():
            rows = self._session.scalars(
                select(LinkRow)
                .where(LinkRow.image_id == image_id)
                .order_by(LinkRow.created_at, LinkRow.id)
            ).all()
        return [link_from_row(row) for row in rows]

    def delete(self, link_id: str) -> bool:
        with translated_errors():
            result = self._session.execute(delete(LinkRow).where(LinkRow.id == link_id))
        return bool(getattr(result, "rowcount", 0))


class SqlAlchemyPresetRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def put(self, preset: Preset) -> bool:
        row = preset_to_row(preset)
        with translated_errors():
            if row.owner != SERVICE_OWNER and self._session.get(UserRow, row.owner) is None:
                raise UserNotFound(f"no user with id {row.owner}")
            existing = self._session.get(PresetRow, (row.owner, row.name))
            if existing is None:
                self._session.add(row)
            else:
                existing.transformation = row.transformation
                existing.eager = row.eager
                existing.updated_at = row.updated_at
        # Written at the next flush or the commit: a name another transaction took meanwhile
        # is a Conflict then.
        return existing is None

    def get(self, user_id: str | None, name: str) -> Preset | None:
        with translated_errors():
            row = self._session.get(PresetRow, (_owner(user_id), name))
        return preset_from_row(row) if row is not None else None

    def list(self, user_id: str | None) -> Sequence[Preset]:
        return self._select(PresetRow.owner == _owner(user_id))

    def count(self, user_id: str) -> int:
        with translated_errors():
            return int(
                self._session.scalar(
                    select(func.count()).select_from(PresetRow).where(PresetRow.owner == user_id)
                )
                or 0
            )

    def eager(self, user_id: str) -> Sequence[Preset]:
        return self._select(PresetRow.owner == user_id, PresetRow.eager.is_(True))

    def delete(self, user_id: str | None, name: str) -> bool:
        with translated_errors():
            result = self._session.execute(
                delete(PresetRow).where(PresetRow.owner == _owner(user_id), PresetRow.name == name)
            )
        return bool(getattr(result, "rowcount", 0))

    def _select(self, *conditions: ColumnElement[bool]) -> Sequence[Preset]:
        with translated_errors():
            rows = self._session.scalars(
                select(PresetRow).where(*conditions).order_by(PresetRow.name)
            ).all()
        return [preset_from_row(row) for row in rows]


def _owner(user_id: str | None) -> str:
    return user_id if user_id is not None else SERVICE_OWNER
