"""Ports: what the use cases need from the outside world, as ``typing.Protocol`` classes.

Adapters in :mod:`imgproc_core.adapters` implement them; the use cases never know which one they
got. Every port has an in-memory twin in :mod:`imgproc_core.adapters.memory` that passes the same
contract tests as the real adapter.
"""

from imgproc_core.ports.auth import AccessToken, PasswordHasher, TokenClaims, TokenIssuer
from imgproc_core.ports.cache import RateLimit, RateLimitDecision, RateLimiter, UrlCache
from imgproc_core.ports.clock import Clock
from imgproc_core.ports.codec import EncodedImage, ImageCodec, ImageInfo
from imgproc_core.ports.messaging import DeadLetterPublisher, JobPublisher
from imgproc_core.ports.metrics import JobMetrics
from imgproc_core.ports.persistence import (
    DatabaseSchema,
    ImageRepository,
    ImageTotals,
    JobQueue,
    LinkRepository,
    PresetRepository,
    UnitOfWork,
    UnitOfWorkFactory,
    UserRepository,
    WebhookRepository,
)
from imgproc_core.ports.storage import (
    MAX_URL_TTL_SECONDS,
    BlobStorage,
    SignedBlobFiles,
    SignedUrl,
    check_signed_url,
)
from imgproc_core.ports.webhooks import (
    MAX_RESPONSE_EXCERPT_BYTES,
    AttemptOutcome,
    WebhookMessage,
    WebhookSender,
    refused_destination,
)

__all__ = [
    "MAX_RESPONSE_EXCERPT_BYTES",
    "MAX_URL_TTL_SECONDS",
    "AccessToken",
    "AttemptOutcome",
    "BlobStorage",
    "Clock",
    "DatabaseSchema",
    "DeadLetterPublisher",
    "EncodedImage",
    "ImageCodec",
    "ImageInfo",
    "ImageRepository",
    "ImageTotals",
    "JobMetrics",
    "JobPublisher",
    "JobQueue",
    "LinkRepository",
    "PasswordHasher",
    "PresetRepository",
    "RateLimit",
    "RateLimitDecision",
    "RateLimiter",
    "SignedBlobFiles",
    "SignedUrl",
    "TokenClaims",
    "TokenIssuer",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "UrlCache",
    "UserRepository",
    "WebhookMessage",
    "WebhookRepository",
    "WebhookSender",
    "check_signed_url",
    "refused_destination",
]
