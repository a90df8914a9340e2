"""Settings: one immutable object, read from ``IMGPROC_*`` environment variables and ``.env``.

Each adapter is chosen on its own (database, blob storage, job queue, rate limiter, URL cache),
so the embedded profile (the defaults: SQLite, a local folder, a queue table, memory) and the
production profile (PostgreSQL, Google Cloud Storage, Kafka, Redis) are two sets of values of the
same settings, and anything in between works too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec

from imgproc_core.domain.limits import Limits
from imgproc_core.ports.cache import RateLimit
from imgproc_core.ports.storage import MAX_URL_TTL_SECONDS

ENV_PREFIX: Final = "IMGPROC_"
MIN_SECRET_BYTES: Final = 32
#: Secrets that appear in examples and tutorials; a service started with one is not secure.
KNOWN_WEAK_SECRETS: Final = frozenset(
    {"secret", "changeme", "change-me", "a_strong_secret_key", "your-secret-key", "dev", "test"}
)

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour)s?\s*$")
_UNIT_SECONDS: Final = {
    **{"s": 1, "sec": 1, "second": 1},
    **{"m": 60, "min": 60, "minute": 60},
    **{"h": 3600, "hour": 3600},
}

#: Variables of the development and test tooling (service scripts, test fixtures), not settings.
_TOOLING_PREFIXES: Final = (f"{ENV_PREFIX}DEV_", f"{ENV_PREFIX}TEST_")

Positive = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
#: A TCP port, or 0 for "none": a listener that is off.
OptionalPort = Annotated[int, msgspec.Meta(ge=0, le=65535)]

#: Settings where an empty value means 0 (off), as an operator writes ``IMGPROC_X=`` to unset.
_EMPTY_MEANS_ZERO: Final = frozenset({"worker_metrics_port", "relay_metrics_port"})


class SettingsError(ValueError):
    """A setting that is missing, malformed or unsafe; the message names the variable."""


def parse_rate(text: str) -> RateLimit:
    """``"10/minute"``, ``"5/10s"``, ``"100/hour"`` -> :class:`RateLimit`."""
    match = _RATE.match(text.lower())
    if not match:
        raise ValueError(f"{text!r} is not a rate such as '10/minute' or '5/10s'")
    count, multiplier, unit = match.groups()
    return RateLimit(int(count), float(int(multiplier or 1) * _UNIT_SECONDS[unit]))


def bootstrap_list(bootstrap_servers: str) -> list[str]:
    """``"host1:9092, host2:9092"`` -> ``["host1:9092", "host2:9092"]``: the form Kafka clients
    take; ``ValueError`` when it names no server."""
    servers = [server.strip() for server in bootstrap_servers.split(",") if server.strip()]
    if not servers:
        raise ValueError("no Kafka bootstrap server given")
    return servers


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    environment: Literal["development", "test", "production"] = "development"

    # -- adapters ------------------------------------------------------------------------------
    database_url: str = "sqlite:///var/imgproc.db"
    storage: Literal["local", "gcs", "memory"] = "local"
    queue: Literal["table", "kafka", "memory"] = "table"
    rate_limiter: Literal["memory", "redis"] = "memory"
    url_cache: Literal["memory", "redis"] = "memory"

    # -- secrets -------------------------------------------------------------------------------
    jwt_secret: str = ""
    #: Signs the local blob URLs; falls back to a key derived from ``jwt_secret`` when empty.
    url_signing_secret: str = ""
    #: Signs delivery links (``/d/...``); falls back to a key derived from ``jwt_secret`` when
    #: empty.
    link_signing_secret: str = ""
    #: Lets development and tests start with a weak secret. Never set it in production.
    allow_insecure_secrets: bool = False

    # -- HTTP ----------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8000
    public_base_url: str = "http://127.0.0.1:8000"
    trusted_proxies: str = ""

    # -- auth ----------------------------------------------------------------------------------
    bcrypt_rounds: Annotated[int, msgspec.Meta(ge=4, le=31)] = 12
    jwt_issuer: str = "imgproc"
    jwt_audience: str = "imgproc-api"
    access_token_ttl_seconds: Positive = 900
    signed_url_ttl_seconds: Annotated[int, msgspec.Meta(ge=10, le=MAX_URL_TTL_SECONDS)] = 300
    signed_url_cache_margin_seconds: Annotated[int, msgspec.Meta(ge=0)] = 30

    # -- delivery links ------------------------------------------------------------------------
    #: ``stream``: the API sends a link's bytes itself; ``redirect``: with GCS, a 307 to a V4
    #: signed URL of the bucket (the local folder always streams).
    link_delivery: Literal["stream", "redirect"] = "stream"
    #: How long a link's first GET waits for its derivative to be rendered before it answers
    #: 503 with ``Retry-After``.
    link_render_wait_seconds: Annotated[float, msgspec.Meta(ge=0, le=60)] = 10.0

    # -- presets -------------------------------------------------------------------------------
    #: Render the service's presets only (``{"preset": NAME}``): a transformation written out,
    #: and a user's own preset, are refused with 422 ``presets_only``.
    presets_only: bool = False

    # -- webhooks ------------------------------------------------------------------------------
    #: Let webhooks go to loopback, private, link-local and other internal addresses: for
    #: development and tests only (a receiver on this machine); never on a shared service.
    webhook_allow_private: bool = False
    #: The first retry's wait; each next one waits twice as long, at most the longest wait.
    webhook_backoff_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 5.0
    webhook_backoff_max_seconds: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 3600.0
    #: How long an event is retried after it happened, before its delivery is marked failed.
    webhook_retry_window_seconds: Annotated[int, msgspec.Meta(ge=60, le=7 * 86400)] = 86400
    #: How often an idle sender looks for due deliveries.
    webhook_poll_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 0.5

    # -- limits --------------------------------------------------------------------------------
    max_upload_bytes: Positive = Limits().max_upload_bytes
    max_pixels: Positive = Limits().max_pixels
    max_frames: Positive = Limits().max_frames
    max_output_side: Positive = Limits().max_output_side

    # -- rate limits ---------------------------------------------------------------------------
    rate_limit_upload: str = "30/minute"
    rate_limit_transform: str = "60/minute"
    rate_limit_auth: str = "10/minute"

    # -- local storage -------------------------------------------------------------------------
    storage_dir: str = "var/blobs"

    # -- Google Cloud Storage ------------------------------------------------------------------
    gcs_bucket: str = "imgproc"
    gcs_project: str = "imgproc"
    gcs_credentials_file: str = ""
    gcs_emulator_host: str = ""

    # -- Redis ---------------------------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"

    # -- Kafka ---------------------------------------------------------------------------------
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic: str = "imgproc.transform"
    kafka_dead_letter_topic: str = "imgproc.transform.dlq"
    kafka_group: str = "imgproc-workers"
    kafka_partitions: Positive = 6

    # -- workers -------------------------------------------------------------------------------
    worker_threads: Annotated[int, msgspec.Meta(ge=0, le=64)] = 2
    #: Processes that render transform jobs, started at the first job. A job runs in one of
    #: them, so jobs on several threads use several cores, and one that runs past
    #: ``job_time_limit_seconds`` is killed. 0 renders a job in its worker's own thread, where
    #: no time limit holds (a thread cannot be stopped). Keep it at least ``worker_threads``,
    #: or threads wait their turn for a process.
    worker_processes: Annotated[int, msgspec.Meta(ge=0, le=256)] = 2
    #: The hard limit on rendering one job, enforced by killing its process; it needs
    #: ``worker_processes`` >= 1. Keep it well below ``job_lease_seconds`` (and below Kafka's
    #: ``max_poll_interval_ms``), so that no job is handed out again while it still runs.
    job_time_limit_seconds: PositiveFloat = 60.0
    job_lease_seconds: PositiveFloat = 120.0
    job_max_attempts: Positive = 5
    job_backoff_seconds: PositiveFloat = 1.0

    # -- metrics of the worker and the relay ---------------------------------------------------
    #: The address ``imgproc worker`` and ``imgproc relay`` serve Prometheus metrics on (at
    #: ``/metrics``); the API serves its own on its HTTP port.
    metrics_host: str = "127.0.0.1"
    #: 0 or empty serves none. Each worker on one host needs a port of its own.
    worker_metrics_port: OptionalPort = 9810
    relay_metrics_port: OptionalPort = 9811

    def __post_init__(self) -> None:
        for name in ("rate_limit_upload", "rate_limit_transform", "rate_limit_auth"):
            try:
                parse_rate(getattr(self, name))
            except ValueError as exc:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()}: {exc}") from None

    @property
    def limits(self) -> Limits:
        return Limits(
            max_upload_bytes=self.max_upload_bytes,
            max_pixels=self.max_pixels,
            max_frames=self.max_frames,
            max_output_side=self.max_output_side,
        )

    @property
    def upload_rate(self) -> RateLimit:
        return parse_rate(self.rate_limit_upload)

    @property
    def transform_rate(self) -> RateLimit:
        return parse_rate(self.rate_limit_transform)

    @property
    def auth_rate(self) -> RateLimit:
        return parse_rate(self.rate_limit_auth)

    @property
    def kafka_bootstrap_list(self) -> list[str]:
        """``kafka_bootstrap_servers`` as a list, one server each (see :func:`bootstrap_list`)."""
        return bootstrap_list(self.kafka_bootstrap_servers)

    @property
    def insecure_secrets_allowed(self) -> bool:
        return self.allow_insecure_secrets or self.environment == "test"

    def check_secrets(self) -> None:
        """Refuse to run with a missing, short or well-known secret (outside tests)."""
        if self.environment == "production" and self.allow_insecure_secrets:
            raise SettingsError("IMGPROC_ALLOW_INSECURE_SECRETS must not be set in production")
        if self.insecure_secrets_allowed:
            return
        for name in ("jwt_secret", "url_signing_secret", "link_signing_secret"):
            value: str = getattr(self, name)
            if name != "jwt_secret" and not value:
                continue
            variable = f"{ENV_PREFIX}{name.upper()}"
            if not value:
                raise SettingsError(f"{variable} is not set: give it at least 32 random bytes")
            if value.strip().lower() in KNOWN_WEAK_SECRETS:
                raise SettingsError(f"{variable} is a well-known example value: replace it")
            if len(value.encode()) < MIN_SECRET_BYTES:
                raise SettingsError(
                    f"{variable} is {len(value.encode())} bytes; it needs at least "
                    f"{MIN_SECRET_BYTES}"
                )

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        env_file: str | Path | None = ".env",
        **overrides: Any,
    ) -> Settings:
        """Read ``IMGPROC_*`` variables from ``env_file`` (if it exists), then from ``environ``
        (which wins), then apply ``overrides``."""
        values: dict[str, Any] = {}
        if env_file is not None and Path(env_file).is_file():
            values |= _prefixed(read_env_file(Path(env_file)))
        values |= _prefixed(os.environ if environ is None else environ)
        values |= overrides
        for name in _EMPTY_MEANS_ZERO:
            if isinstance(values.get(name), str) and not values[name].strip():
                values[name] = 0
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise SettingsError(_name_variable(str(exc))) from None


def _prefixed(environ: Mapping[str, str]) -> dict[str, str]:
    return {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in environ.items()
        if key.startswith(ENV_PREFIX) and not key.startswith(_TOOLING_PREFIXES)
    }


def _name_variable(message: str) -> str:
    match = re.search(r"(?:unknown field|at) `\$?\.?([a-z_]+)`", message)
    if match:
        return f"{ENV_PREFIX}{match.group(1).upper()}: {message}"
    return message


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; ``#`` comments, ``export`` and matching quotes are allowed."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values
