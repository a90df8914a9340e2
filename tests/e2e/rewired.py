"""Apps whose container had providers overridden before ``create_app`` saw it.

``make_app`` takes settings only; a test that needs another clock, or a dependency it can switch
off, builds its app here: the same embedded adapters (SQLite in the folder, local blobs,
Pillow, bcrypt at cost 4), then ``rewire(container)``, then ``create_app``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from imgproc_core.adapters.sqlalchemy.schema import upgrade
from imgproc_core.container import Container, build_container
from imgproc_http import create_app
from tests.e2e.conftest import EmbeddedApp, e2e_settings

Rewire = Callable[[Container], None]


class RewiredApps:
    """Builds apps in a test's temporary folder and closes their containers afterwards."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._built: list[Container] = []

    def __call__(self, rewire: Rewire, **setting_overrides: Any) -> EmbeddedApp:
        folder = self._folder / f"rewired{len(self._built)}"
        folder.mkdir()
        settings = e2e_settings(folder, **setting_overrides)
        upgrade(settings.database_url)
        container = build_container(settings)
        self._built.append(container)
        rewire(container)
        return EmbeddedApp(
            app=create_app(container),
            container=container,
            settings=settings,
            storage_dir=Path(settings.storage_dir),
        )

    def close(self) -> None:
        for container in self._built:
            container.shutdown_resources()
