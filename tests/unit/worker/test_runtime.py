"""Starting the worker and the relay: they refuse settings that do not choose Kafka."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from imgproc_core.container import Container
from imgproc_core.settings import SettingsError
from imgproc_core.testing import build_test_container, settings_for_tests
from imgproc_worker import run_relay, run_worker
from imgproc_worker.__main__ import main


def test_an_unknown_role_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dance"]) == 2
    assert "usage" in capsys.readouterr().err


@pytest.mark.parametrize("role", ["worker", "relay"])
def test_the_table_queue_is_refused_with_a_hint(
    role: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMGPROC_QUEUE", "table")
    monkeypatch.setenv("IMGPROC_ENVIRONMENT", "test")

    assert main([role]) == 2

    error = capsys.readouterr().err
    assert "IMGPROC_QUEUE=kafka" in error
    assert role in error


@pytest.mark.parametrize("run", [run_worker, run_relay])
def test_running_without_kafka_is_refused(
    run: Callable[[Container, threading.Event], object],
) -> None:
    container = build_test_container(settings_for_tests(queue="memory"))
    with pytest.raises(SettingsError, match="Kafka queue"):
        run(container, threading.Event())
