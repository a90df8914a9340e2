"""The :class:`~imgproc_core.ports.codec.ImageCodec` port in a pool of worker processes."""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext
from types import TracebackType
from typing import Any, Final, Literal, Self

from pebble import ProcessExpired, ProcessPool

from imgproc_core.adapters.pillow import PillowImageCodec
from imgproc_core.adapters.process_pool import child
from imgproc_core.adapters.process_pool.messages import (
    Failed,
    Rejected,
    Transformed,
    TransformRequest,
    decode_reply,
    rebuild,
)
from imgproc_core.domain.errors import CodecCrashed, DependencyUnavailable, ProcessingTimeout
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Transformation
from imgproc_core.ports.codec import EncodedImage, ImageCodec, ImageInfo

logger = logging.getLogger(__name__)

StartMethod = Literal["forkserver", "spawn"]

#: How often a caller waiting for its job checks that pebble's pool still runs (pebble's own
#: supervision ticks at the same pace).
HEALTH_CHECK_SECONDS: Final = 0.1
#: How many of pebble's pools one job may see break under it before the pool counts as down.
POOL_STARTS_PER_JOB: Final = 3
_DEPENDENCY: Final = "codec"


def default_start_method() -> StartMethod:
    """``forkserver`` where the platform has it, ``spawn`` elsewhere.

    Never ``fork``: the parent runs threads (HTTP server, worker threads, database pools, and
    pebble's own), and a forked child inherits their locks in whatever state they were, held
    ones included, and deadlocks on the first it needs. ``spawn`` and ``forkserver`` are both
    safe: a worker starts from a fresh single-threaded interpreter and inherits no file
    descriptor but the ones it is given. ``forkserver`` starts that interpreter once and forks
    each worker from it, so a replacement after a kill skips the interpreter's start-up;
    ``spawn`` is the portable fallback.
    """
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class CodecProcessError(RuntimeError):
    """An unexpected exception in a worker process: a bug, not a property of the image.

    The message stays one line, since it may end up as a job's failure reason;
    ``child_traceback`` is the worker's traceback, also attached as a note, so a log of this
    error shows where in the worker it happened.
    """

    def __init__(self, error_type: str, message: str, child_traceback: str) -> None:
        super().__init__(f"{error_type} in a codec worker process: {message}")
        self.error_type = error_type
        self.child_traceback = child_traceback
        self.add_note(f"Traceback in the codec worker process:\n{child_traceback.rstrip()}")


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


class ProcessPoolImageCodec:
    """Transform images in ``size`` worker processes, each job under a hard time limit.

    A decorator of the port: each worker builds its own codec with ``codec_factory`` (Pillow by
    default) and :meth:`transform` hands a job to the pool, so a machine's cores render
    ``size`` images at once whatever the GIL. The processes are pebble's ``ProcessPool``
    (:mod:`pebble`): it hands each job to an idle worker, and a job that runs past
    ``time_limit_seconds`` is stopped for real: its process is killed, a replacement is started
    and :class:`~imgproc_core.domain.errors.ProcessingTimeout` is raised. The limit counts from
    the moment a worker takes the job (pebble checks it every 0.1 s); a call that waits for a
    free worker waits outside the limit.

    :meth:`transform` may be called from any number of threads; at most ``size`` jobs run at
    once and the others wait in turn.

    What comes back from a worker:

    - a domain error (``CorruptImage``, ``CropOutsideImage``, ``ImageTooLarge``...) is raised
      again here as the same class, with the same message and attributes;
    - any other exception is a bug, raised as :class:`CodecProcessError` (a ``RuntimeError``)
      carrying the worker's traceback; the worker carries on;
    - a worker that dies during a job (a crash in a decoder, the kernel's OOM killer) is
      replaced, and :class:`~imgproc_core.domain.errors.CodecCrashed`, a ``ProcessingTimeout``,
      is raised: the caller retries it like a timeout, a bounded number of times, so an image
      that crashes the decoder every time is given up on rather than looping forever;
    - a call made while the pool is closed, or cut short by :meth:`close`, raises
      ``DependencyUnavailable(dependency="codec")``.

    A worker that dies while idle never had a job: the next job runs on a replacement. pebble
    takes a worker's death while no job runs for its whole pool broken and refuses further
    jobs, so this adapter then stops that pool and starts another, and the jobs that had not
    started go to it; :data:`POOL_STARTS_PER_JOB` pools breaking under one job in a row
    (workers that cannot start at all) count as the codec being unavailable.

    :meth:`probe` runs in the calling process. It is bounded by the header checks that come
    first (type, pixel and frame limits, before any decoding) and by the cheap integrity check
    that follows, and it decides what happens to an upload while the client waits: a round trip
    through a worker would copy the upload twice and queue it behind the transform jobs.

    Workers start at first use, all ``size`` at once, or at construction with ``start_eagerly``
    (or :meth:`start`). They exit when the parent closes the pool or dies (see
    :mod:`~imgproc_core.adapters.process_pool.child`). ``initializer``, if given, runs in each
    worker before its codec is built: the hook for per-process tuning such as the memory
    allocator (``mallopt``, Pillow's block cache), which environment variables cannot do for a
    worker forked from a running server. ``codec_factory`` and ``initializer`` are pickled by
    reference, so they must be importable module-level callables (a class is one).

    ``mp_context`` is the start method, ``forkserver`` by default where available
    (:func:`default_start_method` says why); ``fork`` is refused.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        size: int,
        time_limit_seconds: float,
        codec_factory: Callable[[], ImageCodec] = PillowImageCodec,
        *,
        mp_context: StartMethod | None = None,
        start_eagerly: bool = False,
        initializer: Callable[[], None] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a process pool needs at least one process")
        if not time_limit_seconds > 0:
            raise ValueError("the time limit must be a positive number of seconds")
        method = mp_context or default_start_method()
        if method not in ("forkserver", "spawn"):
            raise ValueError(
                f"start method {method!r} is not allowed: use 'forkserver' or 'spawn' (a fork "
                "of a process that runs threads can deadlock)"
            )
        for name, value in (("codec_factory", codec_factory), ("initializer", initializer)):
            _check_picklable(name, value)
        self._size = size
        self._time_limit = float(time_limit_seconds)
        self._codec_factory = codec_factory
        self._initializer = initializer
        self._context: BaseContext = multiprocessing.get_context(method)
        self._lock = threading.Lock()
        self._pool: ProcessPool | None = None
        self._closed = False
        self._local_lock = threading.Lock()
        self._local_codec: ImageCodec | None = None
        # Workers hold the reading end; this process alone holds the writing end, so its death
        # (and only that) ends the lifeline of every worker. Nothing is ever written to it.
        self._lifeline, self._lifeline_writer = self._context.Pipe(duplex=False)
        if start_eagerly:
            self.start()

    # -- the port ----------------------------------------------------------------------------

    def probe(self, data: bytes, limits: Limits) -> ImageInfo:
        return self._in_process_codec().probe(data, limits)

    def transform(
        self,
        data: bytes,
        transformation: Transformation,
        limits: Limits,
        watermark: bytes | None = None,
    ) -> EncodedImage:
        reply = decode_reply(self._run(TransformRequest(data, transformation, limits, watermark)))
        if isinstance(reply, Transformed):
            return reply.image
        if isinstance(reply, Rejected):
            raise rebuild(reply)
        if isinstance(reply, Failed):
            raise CodecProcessError(reply.error_type, reply.message, reply.traceback)
        raise RuntimeError(f"a codec worker answered a job with {type(reply).__name__}")

    # -- the pool ----------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._size

    @property
    def time_limit_seconds(self) -> float:
        return self._time_limit

    def start(self) -> None:
        """Start the worker processes now rather than at the first job."""
        # pebble starts its pool when first asked about it.
        _ = self._current_pool().active

    def close(self) -> None:
        """Stop every worker, idle or busy; callers whose jobs it cuts short get
        ``DependencyUnavailable``. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            _stop(pool)
        # A worker of a pool that a caller's thread is still replacing exits too, on its own.
        self._lifeline_writer.close()
        logger.debug("codec process pool closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- one job -----------------------------------------------------------------------------

    def _run(self, request: TransformRequest) -> bytes:
        """The worker's encoded reply to ``request``."""
        for _ in range(POOL_STARTS_PER_JOB):
            pool = self._current_pool()
            try:
                future: Future[bytes] = pool.schedule(
                    child.run, args=(request,), timeout=self._time_limit
                )
            except RuntimeError:
                # pebble refuses jobs once its pool is broken.
                self._replace(pool)
                continue
            if self._await(pool, future):
                return self._outcome(future)
            self._replace(pool)
        raise DependencyUnavailable(
            f"the codec worker processes broke {POOL_STARTS_PER_JOB} times in a row",
            dependency=_DEPENDENCY,
        )

    def _await(self, pool: ProcessPool, future: Future[bytes]) -> bool:
        """Wait until ``future`` has the job's outcome (True), or until ``pool`` broke before
        the job ran (False: it may run on another pool)."""
        while True:
            done, _ = wait([future], timeout=HEALTH_CHECK_SECONDS)
            if done:
                return not isinstance(future.exception(), BrokenProcessPool) or self._closed
            if not pool.active:
                # Stopped by close(), or broken: pebble will not finish this job.
                if self._closed:
                    raise self._closed_error()
                return False

    def _outcome(self, future: Future[bytes]) -> bytes:
        error = future.exception()
        if error is None:
            return future.result()
        if self._closed:
            raise self._closed_error() from error
        if isinstance(error, TimeoutError):
            logger.warning("a codec job ran past the %g s time limit; killed", self._time_limit)
            raise ProcessingTimeout(
                f"the transformation ran past its time limit of {self._time_limit:g} s"
            )
        if isinstance(error, ProcessExpired):
            description = _describe_exit(error.exitcode)
            logger.warning("codec worker %s died during a job (%s)", error.pid, description)
            raise CodecCrashed(f"the process transforming the image died ({description})") from None
        error_type = f"{type(error).__module__}.{type(error).__qualname__}"
        raise CodecProcessError(error_type, str(error), getattr(error, "traceback", "")) from error

    # -- pebble's pools ----------------------------------------------------------------------

    def _current_pool(self) -> ProcessPool:
        with self._lock:
            if self._closed:
                raise self._closed_error()
            if self._pool is None:
                self._pool = ProcessPool(
                    self._size,
                    initializer=child.start,
                    initargs=(self._codec_factory, self._initializer, self._lifeline),
                    context=self._context,
                )
            return self._pool

    def _replace(self, broken: ProcessPool) -> None:
        """Stop ``broken`` (its live workers too), so that the next job starts another pool."""
        with self._lock:
            if self._pool is not broken:
                return  # another caller saw it first
            self._pool = None
        logger.warning("the codec worker pool broke (a worker died while idle); starting another")
        _stop(broken)

    def _in_process_codec(self) -> ImageCodec:
        with self._local_lock:
            if self._local_codec is None:
                self._local_codec = self._codec_factory()
            return self._local_codec

    @staticmethod
    def _closed_error() -> DependencyUnavailable:
        return DependencyUnavailable("the codec process pool is closed", dependency=_DEPENDENCY)


def _stop(pool: ProcessPool) -> None:
    """Kill every worker of ``pool`` and wait for pebble's threads to end."""
    pool.stop()  # type: ignore[no-untyped-call]
    pool.join()


def _check_picklable(name: str, value: Any) -> None:
    """Fail at construction, in the caller's terms, rather than in the first worker."""
    try:
        pickle.dumps(value)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise TypeError(
            f"{name} must be importable by the worker processes (a module-level function or "
            f"class), got {value!r}"
        ) from exc
