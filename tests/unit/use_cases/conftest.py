"""The in-memory adapters, wired by hand, and the use cases built on them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from imgproc_core.adapters.memory import (
    InMemoryBlobStorage,
    InMemoryDatabase,
    InMemoryImageCodec,
    InMemoryPasswordHasher,
    InMemoryTokenIssuer,
    InMemoryUnitOfWork,
    InMemoryUrlCache,
    ManualClock,
    fake_image_bytes,
)
from imgproc_core.domain.errors import DependencyUnavailable
from imgproc_core.domain.images import Image
from imgproc_core.domain.limits import Limits
from imgproc_core.ports import BlobStorage, SignedUrl, UnitOfWork, UnitOfWorkFactory
from imgproc_core.use_cases import (
    ProcessTransformJob,
    RegisterUser,
    RegisterUserCommand,
    RequestTransform,
    UploadImage,
    UploadImageCommand,
)


class FlakyStorage:
    """Storage that cannot write the first ``failures`` times: a service down for a while."""

    def __init__(self, inner: InMemoryBlobStorage, failures: int) -> None:
        self._inner = inner
        self.failures = failures

    def put(self, key: str, data: bytes, content_type: str) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise DependencyUnavailable("storage is down", "storage")
        self._inner.put(key, data, content_type)

    def get(self, key: str) -> bytes:
        return self._inner.get(key)

    def exists(self, key: str) -> bool:
        return self._inner.exists(key)

    def delete(self, key: str) -> None:
        self._inner.delete(key)

    def delete_prefix(self, prefix: str) -> int:
        return self._inner.delete_prefix(prefix)

    def signed_url(
        self, key: str, expires_in_seconds: int, *, filename: str | None = None
    ) -> SignedUrl:
        return self._inner.signed_url(key, expires_in_seconds, filename=filename)


#: Small limits, so the tests reach them with small fake images.
TEST_LIMITS = Limits(
    max_upload_bytes=64 * 1024,
    max_pixels=4_000_000,
    max_frames=10,
    max_output_side=3000,
)

Upload = Callable[..., Image]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def database() -> InMemoryDatabase:
    return InMemoryDatabase()


@pytest.fixture
def uow_factory(database: InMemoryDatabase, clock: ManualClock) -> UnitOfWorkFactory:
    def new_unit_of_work() -> UnitOfWork:
        return InMemoryUnitOfWork(database, clock)

    return new_unit_of_work


@pytest.fixture
def storage(clock: ManualClock) -> InMemoryBlobStorage:
    return InMemoryBlobStorage(clock=clock)


@pytest.fixture
def cache(clock: ManualClock) -> InMemoryUrlCache:
    return InMemoryUrlCache(clock)


@pytest.fixture
def hasher() -> InMemoryPasswordHasher:
    return InMemoryPasswordHasher()


@pytest.fixture
def tokens(clock: ManualClock) -> InMemoryTokenIssuer:
    return InMemoryTokenIssuer(clock)


@pytest.fixture
def codec() -> InMemoryImageCodec:
    return InMemoryImageCodec()


@pytest.fixture
def limits() -> Limits:
    return TEST_LIMITS


@pytest.fixture
def register_user(
    uow_factory: UnitOfWorkFactory,
    hasher: InMemoryPasswordHasher,
    tokens: InMemoryTokenIssuer,
    clock: ManualClock,
) -> RegisterUser:
    return RegisterUser(uow_factory, hasher, tokens, clock)


@pytest.fixture
def alice(register_user: RegisterUser) -> str:
    """The id of a registered user."""
    return register_user(RegisterUserCommand("alice", "correct horse")).user.id


@pytest.fixture
def bob(register_user: RegisterUser) -> str:
    """The id of another registered user."""
    return register_user(RegisterUserCommand("bob", "battery staple")).user.id


@pytest.fixture
def upload_image(
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    codec: InMemoryImageCodec,
    clock: ManualClock,
    limits: Limits,
) -> UploadImage:
    return UploadImage(uow_factory, storage, codec, clock, limits)


@pytest.fixture
def upload(upload_image: UploadImage, clock: ManualClock) -> Upload:
    """Upload a fake image for a user; each upload a second after the previous one."""

    def do_upload(
        user_id: str,
        *,
        fmt: str = "png",
        width: int = 400,
        height: int = 300,
        frames: int = 1,
        filename: str = "photo.png",
    ) -> Image:
        clock.advance(1)
        data = fake_image_bytes(fmt, width, height, frames=frames)
        return upload_image(UploadImageCommand(user_id, filename, data))

    return do_upload


@pytest.fixture
def request_transform(
    uow_factory: UnitOfWorkFactory, clock: ManualClock, limits: Limits
) -> RequestTransform:
    return RequestTransform(uow_factory, clock, limits)


@pytest.fixture
def process(
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    codec: InMemoryImageCodec,
    clock: ManualClock,
    limits: Limits,
) -> ProcessTransformJob:
    return ProcessTransformJob(uow_factory, storage, codec, clock, limits)


@pytest.fixture
def flaky_storage(storage: InMemoryBlobStorage) -> Callable[[int], BlobStorage]:
    """Put ``storage`` behind a wrapper whose first writes (as many as asked) fail."""

    def wrap(failures: int) -> BlobStorage:
        return FlakyStorage(storage, failures)

    return wrap
