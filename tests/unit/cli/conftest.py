"""The command line on the embedded profile: SQLite and local files in the test's folder,
configured through ``IMGPROC_*`` variables as an operator would, schema migrated with
``imgproc db upgrade``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imgproc_core.settings import Settings
from tests.support.cli import Cli, ServiceSide, embedded_settings, environment_for


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return embedded_settings(tmp_path / "service")


@pytest.fixture
def cli(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    # Relative paths (and a stray .env) resolve in the test's own folder.
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    command_line = Cli(environment_for(settings))
    command_line("db", "upgrade")
    return command_line


@pytest.fixture
def service(settings: Settings, cli: Cli) -> Iterator[ServiceSide]:
    side = ServiceSide(settings)
    yield side
    side.close()
