"""The tables, as typed SQLAlchemy mappings that never leave this adapter.

Rows are mapped to and from the domain entities by hand (:mod:`.mapping`), so the domain stays
free of SQLAlchemy and a schema change never reaches the use cases.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Constraint names are part of the schema that migrations compare and that
#: :mod:`.errors` recognises in an IntegrityError, so they are fixed here rather than left to
#: each database.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

USERNAME_CONSTRAINT: Final = "uq_users_username"

ID_LENGTH: Final = 64
PRESET_NAME_LENGTH: Final = 64


def reference(column: str) -> ForeignKey:
    """A foreign key whose rows go when the row they name goes, checked at commit.

    The session writes rows in an order of its own (an image may reach the database before its
    owner, a derivative before its source): only the committed state has to hold together.
    """
    return ForeignKey(column, ondelete="CASCADE", deferrable=True, initially="DEFERRED")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that always comes back aware and in UTC.

    PostgreSQL stores the instant (``timestamptz``); SQLite keeps text without an offset, so
    values are written in UTC, which also keeps SQLite's text comparisons in time order.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"refusing a naive datetime: {value!r}")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    # Names arrive normalized (NFKC, lower case), so a plain unique index is case-insensitive.
    username: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index(USERNAME_CONSTRAINT, "username", unique=True),)


class ImageRow(Base):
    __tablename__ = "images"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(ID_LENGTH), reference("users.id"))
    # Removing an original removes its derivatives' rows with it, as the service promises.
    source_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), reference("images.id"))
    filename: Mapped[str] = mapped_column(String(255))
    storage_key: Mapped[str] = mapped_column(String(512))
    mimetype: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    frames: Mapped[int] = mapped_column(Integer, default=1)
    transparent: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))
    # The canonical JSON of the transformation: the same bytes its derived id was hashed from.
    transformation: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index("ix_images_source_id", "source_id"),
        Index("ix_images_status", "status"),
    )


# The listing's page: one user's images, newest first (ties by descending id).
Index(
    "ix_images_user_id_created_at",
    ImageRow.user_id,
    ImageRow.created_at.desc(),
    ImageRow.id.desc(),
)


class JobRow(Base):
    """A queued job. The embedded profile's workers claim from this table; the production
    profile's relay claims from it as its outbox and publishes to Kafka."""

    __tablename__ = "job_queue"

    # The job's id is the derived image's id; deleting the image drops a job still queued.
    id: Mapped[str] = mapped_column(String(ID_LENGTH), reference("images.id"), primary_key=True)
    source_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    user_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime())
    leased_by: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_job_queue_due_at", "due_at"),)


class LinkRow(Base):
    """A delivery link. Deleting its image (or the image's owner) deletes it: a link never
    outlives what it serves."""

    __tablename__ = "links"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    image_id: Mapped[str] = mapped_column(String(ID_LENGTH), reference("images.id"))
    # The transformation as the owner wrote it (JSON); NULL: the original.
    transformation: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    auto_format: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_links_image_id_created_at", "image_id", "created_at"),)


class PresetRow(Base):
    """A named transformation. ``owner`` is its user's id, or empty for the service's: a key
    column is never NULL, so one primary key keeps each owner's names unique on every
    database."""

    __tablename__ = "presets"

    owner: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(PRESET_NAME_LENGTH), primary_key=True)
    # The canonical form (JSON) of the transformation.
    transformation: Mapped[str] = mapped_column(Text)
    eager: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class WebhookEndpointRow(Base):
    """A user's webhook endpoint; ``events`` is a comma-separated list of event types."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(ID_LENGTH), reference("users.id"))
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    failing_since: Mapped[datetime | None] = mapped_column(UtcDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    disabled_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_webhook_endpoints_user_id", "user_id"),)


class WebhookDeliveryRow(Base):
    """One event for one endpoint: the outbox of webhook events, leased by the senders."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(String(ID_LENGTH), reference("webhook_endpoints.id"))
    user_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    event_type: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    leased_by: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_id", "endpoint_id"),
    )


class DeliveryAttemptRow(Base):
    """One try at sending a delivery."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    delivery_id: Mapped[str] = mapped_column(String(ID_LENGTH), reference("webhook_deliveries.id"))
    endpoint_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    attempted_at: Mapped[datetime] = mapped_column(UtcDateTime())
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_webhook_attempts_endpoint_id_attempted_at", "endpoint_id", "attempted_at"),
    )
