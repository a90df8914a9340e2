"""The :class:`~imgproc_core.ports.codec.ImageCodec` port in a pool of worker processes."""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

from imgproc_core.adapters.pillow import PillowImageCodec
from imgproc_core.adapters.process_pool.child import serve
from imgproc_core.adapters.process_pool.messages import (
    Failed,
    Ready,
    Rejected,
    Reply,
    Transformed,
    TransformRequest,
    decode_reply,
    encode,
    rebuild,
)
from imgproc_core.domain.errors import CodecCrashed, DependencyUnavailable, ProcessingTimeout
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Transformation
from imgproc_core.ports.codec import EncodedImage, ImageCodec, ImageInfo

logger = logging.getLogger(__name__)

StartMethod = Literal["forkserver", "spawn"]

#: How long a new worker may take to import its codec and say it is ready.
DEFAULT_START_TIMEOUT_SECONDS: Final = 30.0
#: How long :meth:`ProcessPoolImageCodec.close` waits for a worker to exit before killing it.
STOP_GRACE_SECONDS: Final = 2.0
_DEPENDENCY: Final = "codec"


def default_start_method() -> StartMethod:
    """``forkserver`` where the platform has it, ``spawn`` elsewhere.

    Never ``fork``: the parent runs threads (HTTP server, worker threads, database pools), and a
    forked child inherits their locks in whatever state they were, held ones included, and
    deadlocks on the first it needs. ``spawn`` and ``forkserver`` are both safe: a worker
    starts from a fresh single-threaded interpreter and inherits no file descriptor but the
    ones it is given. ``forkserver`` starts that interpreter once and forks each worker from
    it, so a replacement after a kill skips the interpreter's start-up; ``spawn`` is the
    portable fallback.
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


class _WorkerGone(Exception):
    """The worker process died, or its pipe broke."""


def _still_running(pid: int) -> bool:
    """False once the kernel shows ``pid`` dead (gone, or a zombie not yet reaped).

    A forkserver child is reaped by the forkserver, which reports the exit to this process a
    moment later; until then ``is_alive()`` still says True, and a job sent down the pipe may be
    taken by the pipe and lost with it. Where ``/proc`` cannot be read, the process counts as
    running and ``is_alive()`` decides.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


class _Worker:
    """The parent's end of one worker process: its process handle and its pipe.

    Only the thread that holds the worker uses it, except :meth:`interrupt`, which
    :meth:`ProcessPoolImageCodec.close` may call from another thread at any time.
    """

    def __init__(self, process: BaseProcess, connection: Connection) -> None:
        self.process = process
        self.connection = connection
        self.pid: int = process.pid or 0
        self.exitcode: int | None = None
        self._discarded = False
        self._lock = threading.Lock()

    def alive(self) -> bool:
        return not self._discarded and self.process.is_alive() and _still_running(self.pid)

    def send(self, payload: bytes) -> bool:
        """Hand over a job; False when the worker is already gone."""
        try:
            self.connection.send_bytes(payload)
        except OSError:
            return False
        return True

    def receive(self, timeout: float | None) -> bytes | None:
        """The next message, or None when ``timeout`` passes first.

        Raises :class:`_WorkerGone` when the process dies first. A reply written just before
        the process died is still read.
        """
        ready = wait([self.connection, self.process.sentinel], timeout)
        if not ready:
            return None
        if self.connection in ready or self.connection.poll(0):
            try:
                return self.connection.recv_bytes()
            except (EOFError, OSError):
                raise _WorkerGone from None
        raise _WorkerGone

    def interrupt(self) -> None:
        """Kill the process, unless it is already being disposed of; its holder reaps it."""
        with self._lock:
            if not self._discarded:
                self.process.kill()

    def discard(self) -> None:
        """Kill the process (if it still runs), reap it and close the pipe. Idempotent."""
        with self._lock:
            if self._discarded:
                return
            self._discarded = True
            if self.process.exitcode is None:
                self.process.kill()
        self._reap()

    def hang_up(self) -> None:
        """Close the pipe: an idle worker reads end-of-file and exits."""
        self.connection.close()

    def stop(self, grace: float) -> None:
        """After :meth:`hang_up`: wait up to ``grace`` for the exit, then kill. Idempotent."""
        with self._lock:
            if self._discarded:
                return
            self._discarded = True
        self.process.join(grace)
        if self.process.exitcode is None:
            self.process.kill()
        self._reap()

    @property
    def exit_description(self) -> str:
        return _describe_exit(self.exitcode)

    def _reap(self) -> None:
        self.process.join()
        self.exitcode = self.process.exitcode
        self.connection.close()
        self.process.close()


class _Slot:
    """A place for one worker; its worker is None until started, and after it is stopped."""

    __slots__ = ("worker",)

    def __init__(self) -> None:
        self.worker: _Worker | None = None


class ProcessPoolImageCodec:
    """Transform images in ``size`` worker processes, each job under a hard time limit.

    A decorator of the port: each worker builds its own codec with ``codec_factory`` (Pillow by
    default) and :meth:`transform` hands a job to an idle worker, so a machine's cores render
    ``size`` images at once whatever the GIL, and a job that runs past ``time_limit_seconds``
    is stopped for real: its process is killed (SIGKILL), a replacement is started and
    :class:`~imgproc_core.domain.errors.ProcessingTimeout` is raised. The limit counts from the
    moment a worker takes the job; a call that waits for a free worker waits outside the limit.

    :meth:`transform` may be called from any number of threads; each call holds one worker for
    the length of its job, so at most ``size`` run in parallel and the others wait in turn.

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

    :meth:`probe` runs in the calling process. It is bounded by the header checks that come
    first (type, pixel and frame limits, before any decoding) and by the cheap integrity check
    that follows, and it decides what happens to an upload while the client waits: a round trip
    through a worker would copy the upload twice and queue it behind the transform jobs.

    Workers start at first use, or all at once with ``start_eagerly`` (or :meth:`start`). They
    ignore SIGINT (shutting down is the parent's business), and exit when the parent closes
    the pool or dies. ``initializer``, if given, runs in each worker before its codec is built:
    the hook for per-process tuning such as the memory allocator (``mallopt``, Pillow's block
    cache), which environment variables cannot do for a worker forked from a running server.
    ``codec_factory`` and ``initializer`` are pickled by reference, so they must be importable
    module-level callables (a class is one).

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
        start_timeout_seconds: float = DEFAULT_START_TIMEOUT_SECONDS,
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
        self._start_timeout = start_timeout_seconds
        self._context: BaseContext = multiprocessing.get_context(method)
        self._available = threading.Condition()
        self._idle: list[_Slot] = [_Slot() for _ in range(size)]
        self._busy: set[_Slot] = set()
        self._closed = False
        self._started = 0
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
        reply = self._submit(encode(TransformRequest(data, transformation, limits, watermark)))
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

    @property
    def pids(self) -> tuple[int, ...]:
        """The process ids of the workers started and not stopped, idle or busy."""
        with self._available:
            workers = [slot.worker for slot in (*self._idle, *self._busy)]
        return tuple(sorted(worker.pid for worker in workers if worker is not None))

    def start(self) -> None:
        """Start every worker not started yet, now rather than at first use."""
        with self._available:
            self._raise_if_closed()
            empty = [slot for slot in self._idle if slot.worker is None]
            self._idle = [slot for slot in self._idle if slot.worker is not None]
            self._busy.update(empty)
        try:
            # All launched first, so that they import their codec at the same time.
            for slot in empty:
                slot.worker = self._launch()
            for slot in empty:
                assert slot.worker is not None
                self._await_ready(slot.worker)
            self._raise_if_closed()
        except BaseException:
            for slot in empty:
                if slot.worker is not None:
                    slot.worker.discard()
                    slot.worker = None
            raise
        finally:
            for slot in empty:
                self._check_in(slot)

    def close(self) -> None:
        """Stop every worker. Idle ones exit when their pipe closes; those still busy with a
        job are killed, and their callers get ``DependencyUnavailable``. Idempotent."""
        with self._available:
            if self._closed:
                return
            self._closed = True
            idle = [slot.worker for slot in self._idle if slot.worker is not None]
            busy = [slot.worker for slot in self._busy if slot.worker is not None]
            for slot in self._idle:
                slot.worker = None
            self._idle.clear()
            self._available.notify_all()
        for worker in idle:
            worker.hang_up()
        for worker in busy:
            worker.interrupt()
        for worker in idle:
            worker.stop(STOP_GRACE_SECONDS)
        with self._available:
            # The callers of the busy ones reap them as they see them die.
            self._available.wait_for(lambda: not self._busy, STOP_GRACE_SECONDS)
        # A worker still starting in a caller's thread exits too, on its own.
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

    def _submit(self, payload: bytes) -> Reply:
        slot = self._check_out()
        try:
            return self._run(slot, payload)
        finally:
            self._check_in(slot)

    def _run(self, slot: _Slot, payload: bytes) -> Reply:
        answered = False
        try:
            worker = self._deliver(slot, payload)
            reply = self._await_reply(worker, time.monotonic() + self._time_limit)
            answered = True
            return reply
        finally:
            # Anything but a reply (a timeout, a death, this thread interrupted) leaves the
            # worker in an unknown state, perhaps still busy: it is killed, never reused.
            if not answered:
                if slot.worker is not None:
                    slot.worker.discard()
                slot.worker = self._replacement()

    def _deliver(self, slot: _Slot, payload: bytes) -> _Worker:
        worker = slot.worker
        assert worker is not None
        # A pipe can still take a job's bytes for a moment after its reader was killed, so a
        # worker that died while idle is recognised by its exit first (see _still_running).
        if worker.alive() and worker.send(payload):
            return worker
        # It died while idle: the job never reached it, so a fresh worker may take it.
        logger.warning("codec worker %d was gone before its job; starting another", worker.pid)
        worker.discard()
        slot.worker = fresh = self._start_worker()
        if fresh.send(payload):
            return fresh
        raise DependencyUnavailable(
            "a new codec worker process died before it took its job", dependency=_DEPENDENCY
        )

    def _await_reply(self, worker: _Worker, deadline: float) -> Reply:
        try:
            payload = worker.receive(max(0.0, deadline - time.monotonic()))
        except _WorkerGone:
            worker.discard()
            if self._closed:
                raise self._closed_error() from None
            logger.warning(
                "codec worker %d died during a job (%s)", worker.pid, worker.exit_description
            )
            raise CodecCrashed(
                f"the process transforming the image died ({worker.exit_description})"
            ) from None
        if payload is None:
            logger.warning(
                "codec worker %d ran past the %g s time limit; killing it",
                worker.pid,
                self._time_limit,
            )
            worker.discard()
            raise ProcessingTimeout(
                f"the transformation ran past its time limit of {self._time_limit:g} s"
            )
        return decode_reply(payload)

    # -- workers -----------------------------------------------------------------------------

    def _check_out(self) -> _Slot:
        """An idle slot, marked busy, with a live worker in it (started if need be)."""
        with self._available:
            while not self._idle and not self._closed:
                self._available.wait()
            self._raise_if_closed()
            slot = self._idle.pop()
            self._busy.add(slot)
        try:
            if slot.worker is not None and not slot.worker.alive():
                logger.warning("codec worker %d had exited; replacing it", slot.worker.pid)
                slot.worker.discard()
                slot.worker = None
            if slot.worker is None:
                slot.worker = self._start_worker()
        except BaseException:
            self._check_in(slot)
            raise
        return slot

    def _check_in(self, slot: _Slot) -> None:
        with self._available:
            if not self._closed:
                self._busy.discard(slot)
                self._idle.append(slot)
                self._available.notify()
                return
        if slot.worker is not None:
            slot.worker.hang_up()
            slot.worker.stop(STOP_GRACE_SECONDS)
            slot.worker = None
        with self._available:
            self._busy.discard(slot)
            self._available.notify_all()

    def _replacement(self) -> _Worker | None:
        """A new worker for a slot whose worker was killed; None (the next job starts one)
        when the pool is closed or the start fails."""
        if self._closed:
            return None
        try:
            return self._start_worker()
        except Exception:
            logger.warning("could not start a replacement codec worker", exc_info=True)
            return None

    def _start_worker(self) -> _Worker:
        worker = self._launch()
        try:
            self._await_ready(worker)
            # A worker started while the pool closed would be missed by close().
            self._raise_if_closed()
        except BaseException:
            worker.discard()
            raise
        return worker

    def _launch(self) -> _Worker:
        parent_end, child_end = self._context.Pipe(duplex=True)
        with self._available:
            self._started += 1
            number = self._started
        process: BaseProcess = self._context.Process(  # type: ignore[attr-defined]
            target=serve,
            args=(child_end, self._lifeline, self._codec_factory, self._initializer),
            name=f"imgproc-codec-{number}",
            daemon=True,
        )
        try:
            process.start()
        except OSError as exc:
            parent_end.close()
            raise DependencyUnavailable(
                f"could not start a codec worker process: {exc}", dependency=_DEPENDENCY
            ) from exc
        finally:
            # The worker has its own copy now; keeping this one open would hide its death.
            child_end.close()
        return _Worker(process, parent_end)

    def _await_ready(self, worker: _Worker) -> None:
        try:
            payload = worker.receive(self._start_timeout)
        except _WorkerGone:
            worker.discard()
            raise DependencyUnavailable(
                f"a codec worker process exited as it started ({worker.exit_description})",
                dependency=_DEPENDENCY,
            ) from None
        if payload is None:
            raise DependencyUnavailable(
                f"a codec worker process was not ready within {self._start_timeout:g} s",
                dependency=_DEPENDENCY,
            )
        reply = decode_reply(payload)
        if isinstance(reply, Failed):
            raise CodecProcessError(reply.error_type, reply.message, reply.traceback)
        if not isinstance(reply, Ready):
            raise RuntimeError(f"a new codec worker said {type(reply).__name__}, not Ready")

    def _in_process_codec(self) -> ImageCodec:
        with self._local_lock:
            if self._local_codec is None:
                self._local_codec = self._codec_factory()
            return self._local_codec

    def _raise_if_closed(self) -> None:
        if self._closed:
            raise self._closed_error()

    @staticmethod
    def _closed_error() -> DependencyUnavailable:
        return DependencyUnavailable("the codec process pool is closed", dependency=_DEPENDENCY)


def _check_picklable(name: str, value: Any) -> None:
    """Fail at construction, in the caller's terms, rather than in the first worker."""
    try:
        pickle.dumps(value)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise TypeError(
            f"{name} must be importable by the worker processes (a module-level function or "
            f"class), got {value!r}"
        ) from exc
