"""In-memory adapters: every port as a dictionary or a list, with no dependency.

They pass the same contract tests as the real adapters, so the use cases can be tested with
them, here and in any service that builds on the core. ``InMemoryRateLimiter`` and
``InMemoryUrlCache`` are also the embedded profile's production adapters.
"""

from imgproc_core.adapters.memory.auth import InMemoryPasswordHasher, InMemoryTokenIssuer
from imgproc_core.adapters.memory.cache import InMemoryRateLimiter, InMemoryUrlCache
from imgproc_core.adapters.memory.clock import ManualClock
from imgproc_core.adapters.memory.codec import InMemoryImageCodec, fake_image_bytes
from imgproc_core.adapters.memory.messaging import (
    InMemoryDeadLetterPublisher,
    InMemoryJobPublisher,
)
from imgproc_core.adapters.memory.metrics import (
    EndedAttempt,
    InMemoryJobMetrics,
    InMemoryWebhookMetrics,
)
from imgproc_core.adapters.memory.persistence import (
    InMemoryDatabase,
    InMemoryImageRepository,
    InMemoryJobQueue,
    InMemoryLinkRepository,
    InMemorySchema,
    InMemoryUnitOfWork,
    InMemoryUserRepository,
    QueuedJob,
    in_memory_unit_of_work_factory,
)
from imgproc_core.adapters.memory.storage import (
    InMemoryBlobStorage,
    check_blob_key,
    check_blob_prefix,
)
from imgproc_core.adapters.memory.webhooks import (
    InMemoryWebhookSender,
    ReceivedWebhook,
    WebhookAnswer,
    signed_headers,
)

__all__ = [
    "EndedAttempt",
    "InMemoryBlobStorage",
    "InMemoryDatabase",
    "InMemoryDeadLetterPublisher",
    "InMemoryImageCodec",
    "InMemoryImageRepository",
    "InMemoryJobMetrics",
    "InMemoryJobPublisher",
    "InMemoryJobQueue",
    "InMemoryLinkRepository",
    "InMemoryPasswordHasher",
    "InMemoryRateLimiter",
    "InMemorySchema",
    "InMemoryTokenIssuer",
    "InMemoryUnitOfWork",
    "InMemoryUrlCache",
    "InMemoryUserRepository",
    "InMemoryWebhookMetrics",
    "InMemoryWebhookSender",
    "ManualClock",
    "QueuedJob",
    "ReceivedWebhook",
    "WebhookAnswer",
    "check_blob_key",
    "check_blob_prefix",
    "fake_image_bytes",
    "in_memory_unit_of_work_factory",
    "signed_headers",
]
