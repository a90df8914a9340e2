"""What a worker process runs: the codec, built once per process, and one job at a time.

pebble starts the processes, hands each its jobs, and stops or replaces them; this module is
what they run. :func:`start` is pebble's initializer: it runs the pool's own initializer, then
builds the codec, once per process and before the process takes a job, so that neither counts
against a job's time limit. It never raises: a failure is remembered, and every job of that
process answers with it. (A worker whose initializer raises exits, and pebble, seeing a worker
exit while no job runs, declares its whole pool broken.) :func:`run` is the job: the request
in, an encoded reply out, never an exception, so that the parent unpickles nothing but bytes
of a worker's making.

Stopping is the parent's business. pebble makes its workers ignore SIGINT (a Ctrl-C in a
terminal reaches the whole process group), and stops a worker with SIGTERM (a job past its
time limit, the pool closing), then SIGKILL if it still runs after 3 s. pebble's own SIGTERM
handler runs only between two bytecodes, which a job inside libjpeg does not reach for a long
while, so :func:`start` gives SIGTERM back its default action: the process ends at once,
wherever it is.

A worker busy with a long job would not notice its parent's death until the job ends, so a
watchdog thread also waits on a ``lifeline``, a pipe whose only writing end the parent holds
and never writes to: end-of-file there means the parent is gone, and the worker exits at once.
(Watching the parent process id would not do: under ``forkserver`` the parent is the fork
server, which lives on as long as any worker does.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Final

from imgproc_core.adapters.process_pool.messages import (
    Failed,
    Reply,
    Transformed,
    TransformRequest,
    encode,
    rejected,
)
from imgproc_core.domain.errors import DomainError
from imgproc_core.ports.codec import ImageCodec

#: Exit status of a worker whose parent went away.
EXIT_ORPHANED: Final = 3

#: This process's codec once :func:`start` built it, or why it could not.
_codec: ImageCodec | None = None
_start_failure: Failed | None = None


def start(
    codec_factory: Callable[[], ImageCodec],
    initializer: Callable[[], None] | None,
    lifeline: Connection,
) -> None:
    """pebble's initializer: ``initializer`` runs before the codec is built."""
    global _codec, _start_failure
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _exit_with_parent(lifeline)
    try:
        if initializer is not None:
            initializer()
        _codec = codec_factory()
    except Exception as exc:
        _start_failure = failure(exc)


def run(request: TransformRequest) -> bytes:
    """pebble's job: the encoded reply to one request."""
    if _codec is None:
        return encode(_start_failure or failure(RuntimeError("the codec worker did not start")))
    return answer(_codec, request)


def answer(codec: ImageCodec, request: TransformRequest) -> bytes:
    """The encoded reply to one request."""
    reply: Reply
    try:
        image = codec.transform(
            request.data, request.transformation, request.limits, watermark=request.watermark
        )
        reply = Transformed(image=image)
    except DomainError as exc:
        reply = rejected(exc)
    except Exception as exc:
        reply = failure(exc)
    try:
        return encode(reply)
    except Exception as exc:
        # A codec that returned something other than an EncodedImage.
        return encode(failure(exc))


def failure(error: Exception) -> Failed:
    return Failed(
        error_type=f"{type(error).__module__}.{type(error).__qualname__}",
        message=str(error),
        traceback="".join(traceback.format_exception(error)),
    )


def _exit_with_parent(lifeline: Connection) -> None:
    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv_bytes()
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="imgproc-codec-lifeline", daemon=True).start()
