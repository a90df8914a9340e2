"""``python -m tests.support.slow_worker``: the Kafka worker, configured by ``IMGPROC_*`` as
``imgproc worker`` is, whose codec sleeps ``IMGPROC_TEST_CODEC_DELAY_SECONDS`` before each
transform, so that a test can signal or kill it while it holds jobs."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from dependency_injector import providers

from imgproc_core.adapters.pillow import PillowImageCodec
from imgproc_core.container import build_container
from imgproc_core.settings import Settings
from imgproc_worker.runtime import LOG_FORMAT, run_worker, stop_on_signals

DELAY_VARIABLE = "IMGPROC_TEST_CODEC_DELAY_SECONDS"


class SlowCodec(PillowImageCodec):
    def __init__(self, delay_seconds: float) -> None:
        super().__init__()
        self._delay = delay_seconds

    def transform(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self._delay)
        return super().transform(*args, **kwargs)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    settings = Settings.from_env()
    container = build_container(settings)
    container.job_codec.override(
        providers.Singleton(SlowCodec, float(os.environ.get(DELAY_VARIABLE, "1")))
    )
    stop = threading.Event()
    container.init_resources()
    try:
        with stop_on_signals(stop):
            run_worker(container, stop)
    finally:
        container.shutdown_resources()


if __name__ == "__main__":
    main()
