"""The loop a worker process runs: build the codec, say so, then answer jobs until the pipe closes.

A worker leaves shutdown to its parent: it ignores SIGINT (a Ctrl-C in a terminal reaches the
whole process group, and the parent decides what happens to the jobs in hand), and it exits when
its pipe closes, which is how :meth:`ProcessPoolImageCodec.close` ends an idle worker, and what
happens when the parent dies. A worker busy with a long job would not read its pipe until it
answers, so a watchdog thread also waits on a ``lifeline``, a pipe whose only writing end the
parent holds and never writes to: end-of-file there means the parent is gone, and the worker
exits at once. (Watching the parent process id would not do: under ``forkserver`` the parent is
the fork server, which lives on as long as any worker does.)
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
    Ready,
    Reply,
    Transformed,
    decode_request,
    encode,
    rejected,
)
from imgproc_core.domain.errors import DomainError
from imgproc_core.ports.codec import ImageCodec

#: Exit status of a worker whose parent went away.
EXIT_ORPHANED: Final = 3


def serve(
    connection: Connection,
    lifeline: Connection,
    codec_factory: Callable[[], ImageCodec],
    initializer: Callable[[], None] | None,
) -> None:
    """The worker process's target. ``initializer`` runs before the codec is built."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(lifeline)
    try:
        if initializer is not None:
            initializer()
        codec = codec_factory()
    except Exception as exc:
        _send(connection, encode(failure(exc)))
        return
    if not _send(connection, encode(Ready(pid=os.getpid()))):
        return
    while True:
        try:
            payload = connection.recv_bytes()
        except (EOFError, OSError):
            return
        if not _send(connection, answer(codec, payload)):
            return


def answer(codec: ImageCodec, payload: bytes) -> bytes:
    """The encoded reply to one encoded request."""
    reply: Reply
    try:
        request = decode_request(payload)
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


def _send(connection: Connection, payload: bytes) -> bool:
    try:
        connection.send_bytes(payload)
    except OSError:
        return False
    return True


def _exit_with_parent(lifeline: Connection) -> None:
    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv_bytes()
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="imgproc-codec-lifeline", daemon=True).start()
