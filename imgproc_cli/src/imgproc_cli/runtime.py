"""How a command starts: settings from the environment, and a built container whose
resources it opens and closes.

Every command reads the same ``IMGPROC_*`` variables (and ``.env``) as the service, so an
operator's command works on the database and storage the service uses, on either profile.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from imgproc_cli.errors import EXIT_USAGE, fail, reported_errors
from imgproc_core.settings import Settings, SettingsError

if TYPE_CHECKING:
    from imgproc_core.container import Container


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with the command's options (those given) on top;
    exits with :data:`~imgproc_cli.errors.EXIT_USAGE` when they are malformed."""
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return Settings.from_env(**given)
    except SettingsError as exc:
        fail(str(exc), EXIT_USAGE)


def check_schema(container: Container) -> None:
    """Exit unless the database's schema is the one this version expects (a database in
    memory has none to check)."""
    schema = container.database_schema()
    with reported_errors():
        expected = schema.expected()
        if expected is None:
            return
        revision = schema.current()
    if revision != expected:
        fail(
            f"the database schema is at {revision or 'none'}, this version needs {expected}: "
            "run `imgproc db upgrade` first",
            EXIT_USAGE,
        )


@contextmanager
def service_container(settings: Settings) -> Iterator[Container]:
    """The service's container, as ``imgproc serve`` builds it: secrets checked, the schema
    up to date, resources open for the block and closed after it. The core's errors raised in
    the block become an exit status (:mod:`imgproc_cli.errors`)."""
    from imgproc_core.container import build_container

    with reported_errors():
        settings.check_secrets()
    container = build_container(settings)
    check_schema(container)
    with reported_errors():
        container.init_resources()
        try:
            yield container
        finally:
            container.shutdown_resources()
