"""ProcessPoolImageCodec: the real codec in worker processes, each job under a hard time limit.

The pools here run :class:`ScriptedImageCodec`, which renders real images with Pillow and obeys
a small JSON script given in place of an image: sleep, meet its peers, raise, die. It lives at
module level so that the worker processes can import it.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from imgproc_core.adapters.memory import InMemoryImageCodec
from imgproc_core.adapters.pillow import PillowImageCodec
from imgproc_core.adapters.process_pool import CodecProcessError, ProcessPoolImageCodec
from imgproc_core.container import build_container
from imgproc_core.domain.errors import (
    CodecCrashed,
    CorruptImage,
    CropOutsideImage,
    DependencyUnavailable,
    DomainError,
    ImageTooLarge,
    InvalidInput,
    ProcessingTimeout,
)
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Transformation, parse_transformation
from imgproc_core.ports.codec import EncodedImage
from imgproc_core.testing import build_test_container, settings_for_tests
from tests.support.waiting import wait_until

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
LIMITS = Limits()
ANY = Transformation(grayscale=True)
#: Long enough for any honest job here; the tests that mean to time out set their own.
GENEROUS_LIMIT = 30.0
#: How long a test waits for something that should happen at once (a process to vanish).
PATIENCE_SECONDS = 15.0


class RetryLater(DomainError):
    """A domain error whose ``__init__`` takes no message, as pickle would need."""

    code = "retry_later"

    def __init__(self, *, seconds: float, reason: str) -> None:
        super().__init__(f"retry in {seconds} s: {reason}")
        self.seconds = seconds
        self.reason = reason


DOMAIN_ERRORS: dict[str, DomainError] = {
    "too-large": ImageTooLarge("the upload is over 5 bytes", limit_bytes=5),
    "invalid": InvalidInput("width must be positive", "resize.width"),
    "unavailable": DependencyUnavailable("storage is down", dependency="storage", retry_after=2.5),
    "custom-init": RetryLater(seconds=1.5, reason="busy"),
}


class ScriptedImageCodec:
    """Pillow for real images; for a JSON script, does what it says and answers with its pid."""

    def __init__(self) -> None:
        self._pillow = PillowImageCodec()

    def probe(self, data: bytes, limits: Limits) -> Any:
        return self._pillow.probe(data, limits)

    def transform(
        self,
        data: bytes,
        transformation: Transformation,
        limits: Limits,
        watermark: bytes | None = None,
    ) -> EncodedImage:
        if not data.startswith(b"{"):
            return self._pillow.transform(data, transformation, limits, watermark)
        script = json.loads(data)
        action = script["do"]
        if action == "sleep":
            if "folder" in script:
                _say_started(Path(script["folder"]))
            time.sleep(script["seconds"])
        elif action == "hold":
            _hold(Path(script["folder"]))
        elif action == "meet":
            _meet(Path(script["folder"]), script["peers"])
        elif action == "raise":
            raise DOMAIN_ERRORS[script["error"]]
        elif action == "fail":
            raise ValueError(script["message"])
        elif action == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "tell-tuning":
            answer = json.dumps({"mark": os.environ.get(TUNED), "pid": os.getpid()}).encode()
            return EncodedImage(data=answer, format="png", mimetype="image/png", width=1, height=1)
        pid = str(os.getpid()).encode()
        return EncodedImage(data=pid, format="png", mimetype="image/png", width=1, height=1)


TUNED = "CODEC_WORKER_TUNED_BY"


def tune_worker() -> None:
    """An initializer: leaves a mark that the codec can read back."""
    os.environ[TUNED] = f"tuned {os.getpid()}"


def broken_codec() -> ScriptedImageCodec:
    raise ImportError("no codec library here")


def _say_started(folder: Path) -> None:
    """Tell the test that this job has started: a file in ``folder`` named by the worker's pid."""
    (folder / str(os.getpid())).touch()


def wait_until_started(folder: Path) -> set[int]:
    """Wait until a job has said in ``folder`` that it started; the pids of those that have."""
    return wait_until(
        lambda: {int(path.name) for path in folder.iterdir()},
        timeout=PATIENCE_SECONDS,
        interval=0.01,
        message=f"no job said in {folder} that it started",
    )


def _hold(folder: Path) -> None:
    """Say so in ``folder`` (a file named by this pid), then wait for a file named ``release``."""
    _say_started(folder)
    wait_until(
        (folder / "release").exists,
        timeout=PATIENCE_SECONDS,
        interval=0.01,
        message="the job was never released",
    )


def _meet(folder: Path, peers: int) -> None:
    """Wait until ``peers`` jobs, this one included, are running at the same time."""
    _say_started(folder)
    wait_until(
        lambda: len(list(folder.iterdir())) >= peers,
        timeout=PATIENCE_SECONDS,
        interval=0.01,
        message=lambda: f"only {len(list(folder.iterdir()))} of {peers} jobs ran at once",
    )


def script(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def pid_of(pool: ProcessPoolImageCodec, **fields: Any) -> int:
    """Run a script (by default, nothing) and return the pid of the worker that ran it."""
    return int(pool.transform(script(do="nothing", **fields), ANY, LIMITS).data)


def worker_pids(pool: ProcessPoolImageCodec, size: int, folder: Path) -> set[int]:
    """The pids of all ``size`` workers: as many jobs at once, each waiting for the others."""
    folder.mkdir()
    job = script(do="meet", folder=str(folder), peers=size)
    with ThreadPoolExecutor(size) as threads:
        return {
            int(image.data)
            for image in threads.map(lambda _: pool.transform(job, ANY, LIMITS), range(size))
        }


def codec_processes() -> set[int]:
    """The live codec worker processes of every pool of this process (pebble's workers)."""
    return {
        process.pid
        for process in multiprocessing.active_children()
        if process.name == "pebble_pool_worker" and process.pid is not None
    }


def running(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def wait_until_gone(pids: list[int] | tuple[int, ...]) -> None:
    """Wait until every pid has exited; fails with those still running when patience runs out."""
    wait_until(
        lambda: not any(running(pid) for pid in pids),
        timeout=PATIENCE_SECONDS,
        interval=0.02,
        message=lambda: f"still running: {[pid for pid in pids if running(pid)]}",
    )


@pytest.fixture
def make_pool() -> Iterator[Any]:
    pools: list[ProcessPoolImageCodec] = []

    def make(size: int = 1, time_limit: float = GENEROUS_LIMIT, **options: Any) -> Any:
        pool = ProcessPoolImageCodec(size, time_limit, ScriptedImageCodec, **options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


@pytest.fixture(scope="module")
def shared_pool() -> Iterator[ProcessPoolImageCodec]:
    """For the tests that neither kill nor close a worker."""
    with ProcessPoolImageCodec(1, GENEROUS_LIMIT, ScriptedImageCodec) as pool:
        yield pool


# -- same results as the codec in process --------------------------------------------------------

CORPUS_CASES: dict[str, dict[str, Any]] = {
    "pillow/hopper_orientation_6.jpg": {"resize": {"width": 64}, "format": "webp"},
    "pillow/iss634.gif": {"resize": {"width": 40}},
    "pillow/icc_profile_big.jpg": {"crop": {"x": 5, "y": 5, "width": 80, "height": 60}},
    "pngsuite/basn6a16.png": {"rotate": 90, "mirror": True, "sepia": True},
    "pillow/hopper.tif": {"watermark": {"text": "(c) me"}, "format": "jpeg", "quality": 70},
}


def test_the_pool_gives_the_same_bytes_as_the_codec_in_process(corpus_dir: Path) -> None:
    in_process = PillowImageCodec()
    with ProcessPoolImageCodec(2, GENEROUS_LIMIT) as pool:
        for name, body in CORPUS_CASES.items():
            data = (corpus_dir / name).read_bytes()
            transformation = parse_transformation(body)

            expected = in_process.transform(data, transformation, LIMITS)
            got = pool.transform(data, transformation, LIMITS)

            assert got == expected, name
        assert pool.probe(data, LIMITS) == in_process.probe(data, LIMITS)


def test_an_image_watermark_travels_with_the_job(corpus_dir: Path) -> None:
    source = (corpus_dir / "pillow" / "hopper.jpg").read_bytes()
    mark = (corpus_dir / "pngsuite" / "basn6a08.png").read_bytes()
    transformation = parse_transformation({"watermark": {"image_id": "logo", "scale": 0.5}})
    with ProcessPoolImageCodec(1, GENEROUS_LIMIT) as pool:
        got = pool.transform(source, transformation, LIMITS, watermark=mark)

    assert got == PillowImageCodec().transform(source, transformation, LIMITS, watermark=mark)


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(DOMAIN_ERRORS))
def test_a_domain_error_comes_back_as_itself(shared_pool: ProcessPoolImageCodec, name: str) -> None:
    original = DOMAIN_ERRORS[name]

    with pytest.raises(DomainError) as raised:
        shared_pool.transform(script(do="raise", error=name), ANY, LIMITS)

    error = raised.value
    assert type(error) is type(original)
    assert error is not original
    assert str(error) == str(original)
    assert error.args == original.args
    assert vars(error) == vars(original)


def test_errors_of_the_real_codec_keep_their_class_and_field(
    shared_pool: ProcessPoolImageCodec, corpus_dir: Path
) -> None:
    pool = shared_pool
    data = (corpus_dir / "pillow" / "hopper.jpg").read_bytes()

    with pytest.raises(CropOutsideImage) as outside:
        pool.transform(
            data, parse_transformation({"crop": {"x": 120, "width": 20, "height": 5}}), LIMITS
        )
    assert outside.value.field == "crop"
    assert outside.value.code == "crop_outside_image"

    with pytest.raises(CorruptImage):
        pool.transform(data[: len(data) // 2], ANY, LIMITS)


def test_an_unexpected_exception_is_a_bug_with_the_worker_traceback(
    shared_pool: ProcessPoolImageCodec,
) -> None:
    pool = shared_pool
    worker = pid_of(pool)

    with pytest.raises(CodecProcessError) as raised:
        pool.transform(script(do="fail", message="off by one"), ANY, LIMITS)

    assert isinstance(raised.value, RuntimeError)
    assert raised.value.error_type == "builtins.ValueError"
    assert "off by one" in str(raised.value)
    assert 'raise ValueError(script["message"])' in raised.value.child_traceback
    assert "Traceback" not in str(raised.value)
    assert raised.value.child_traceback.rstrip() in "".join(raised.value.__notes__)
    # The worker was fine: it carries on.
    assert pid_of(pool) == worker


# -- time limit, crashes, replacement ------------------------------------------------------------


def test_a_job_past_the_time_limit_is_killed_and_the_pool_goes_on(make_pool: Any) -> None:
    pool = make_pool(time_limit=0.5)
    first = pid_of(pool)

    started = time.monotonic()
    with pytest.raises(ProcessingTimeout) as raised:
        pool.transform(script(do="sleep", seconds=60), ANY, LIMITS)
    logger.info("a 60 s job was stopped after %.2f s", time.monotonic() - started)

    assert type(raised.value) is ProcessingTimeout
    assert "0.5 s" in str(raised.value)
    wait_until_gone([first])
    second = pid_of(pool)
    assert second != first


def test_the_wait_for_a_free_worker_is_not_counted(make_pool: Any, tmp_path: Path) -> None:
    # One worker, two jobs of 60% of the limit each: the second waits for the first, so from
    # its call to its answer it takes longer than the limit, and must not be stopped for it.
    pool = make_pool(size=1, time_limit=1.2)
    pid_of(pool)
    job = script(do="sleep", seconds=0.75, folder=str(tmp_path))
    with ThreadPoolExecutor(2) as threads:
        first = threads.submit(pool.transform, job, ANY, LIMITS)
        wait_until_started(tmp_path)
        started = time.monotonic()
        second = threads.submit(pool.transform, job, ANY, LIMITS)
        pids = {int(first.result().data), int(second.result().data)}
        logger.info("the second job answered %.2f s after its call", time.monotonic() - started)

    assert len(pids) == 1


def test_a_worker_that_dies_during_a_job_is_a_crash_and_is_replaced(make_pool: Any) -> None:
    pool = make_pool()
    first = pid_of(pool)

    with pytest.raises(CodecCrashed) as raised:
        pool.transform(script(do="die"), ANY, LIMITS)

    assert isinstance(raised.value, ProcessingTimeout)
    assert "SIGKILL" in str(raised.value)
    assert not running(first)
    second = pid_of(pool)
    assert second != first


def test_idle_workers_killed_from_outside_are_replaced(make_pool: Any, tmp_path: Path) -> None:
    # pebble takes a worker's death while no job runs for its whole pool broken: the adapter
    # starts another pool, and the jobs go there.
    pool = make_pool(size=2)
    victims = worker_pids(pool, 2, tmp_path / "before")
    assert len(victims) == 2

    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    wait_until_gone(list(victims))

    with ThreadPoolExecutor(2) as threads:
        pids = set(threads.map(lambda _: pid_of(pool), range(4)))
    assert pids.isdisjoint(victims)
    after = worker_pids(pool, 2, tmp_path / "after")
    assert len(after) == 2
    assert after.isdisjoint(victims)


def test_an_idle_worker_killed_beside_a_busy_one_is_replaced(
    make_pool: Any, tmp_path: Path
) -> None:
    # With a job running, pebble replaces the dead worker and leaves its pool as it is.
    before = codec_processes()
    pool = make_pool(size=2)
    workers = worker_pids(pool, 2, tmp_path / "before")
    held = tmp_path / "held"
    held.mkdir()
    with ThreadPoolExecutor(1) as threads:
        busy = threads.submit(pool.transform, script(do="hold", folder=str(held)), ANY, LIMITS)
        wait_until(
            lambda: any(held.iterdir()),
            timeout=PATIENCE_SECONDS,
            interval=0.01,
            message="the job never started",
        )
        (busy_pid,) = (int(path.name) for path in held.iterdir())
        (idle,) = workers - {busy_pid}
        os.kill(idle, signal.SIGKILL)
        wait_until_gone([idle])
        # The replacement starts while the job still runs.
        wait_until(
            lambda: len(codec_processes() - before - workers) == 1,
            timeout=PATIENCE_SECONDS,
            interval=0.01,
            message=lambda: f"no replacement beside {workers}: {codec_processes() - before}",
        )
        (held / "release").touch()

        assert int(busy.result().data) == busy_pid

    after = worker_pids(pool, 2, tmp_path / "after")
    assert busy_pid in after
    assert idle not in after
    assert after == codec_processes() - before


# -- concurrency ---------------------------------------------------------------------------------


def test_parallel_calls_run_in_as_many_workers_at_once(make_pool: Any, tmp_path: Path) -> None:
    pool = make_pool(size=3)
    job = script(do="meet", folder=str(tmp_path), peers=3)

    with ThreadPoolExecutor(3) as threads:
        results = list(threads.map(lambda _: pool.transform(job, ANY, LIMITS), range(3)))

    pids = {int(result.data) for result in results}
    assert len(pids) == 3
    assert {int(path.name) for path in tmp_path.iterdir()} == pids


def test_workers_start_at_first_use_unless_started_eagerly(make_pool: Any) -> None:
    before = codec_processes()
    lazy = make_pool(size=2)
    assert codec_processes() == before
    worker = pid_of(lazy)
    started = codec_processes() - before
    assert worker in started
    assert len(started) == 2

    before = codec_processes()
    make_pool(size=2, start_eagerly=True)
    assert len(codec_processes() - before) == 2


def test_the_initializer_runs_in_each_worker_before_its_codec(make_pool: Any) -> None:
    pool = make_pool(size=2, initializer=tune_worker)
    tell = script(do="tell-tuning")

    with ThreadPoolExecutor(2) as threads:
        answers = list(threads.map(lambda _: pool.transform(tell, ANY, LIMITS).data, range(4)))

    for answer in map(json.loads, answers):
        assert answer["mark"] == f"tuned {answer['pid']}"
    assert TUNED not in os.environ


def test_a_codec_that_cannot_be_built_is_a_bug_reported_to_every_job() -> None:
    with ProcessPoolImageCodec(1, GENEROUS_LIMIT, broken_codec) as pool:
        for _ in range(2):
            with pytest.raises(CodecProcessError, match="no codec library here") as raised:
                pool.transform(script(do="nothing"), ANY, LIMITS)
            assert raised.value.error_type == "builtins.ImportError"
            assert "broken_codec" in raised.value.child_traceback


# -- closing -------------------------------------------------------------------------------------


def test_close_leaves_no_worker_behind(make_pool: Any) -> None:
    before = codec_processes()
    pool = make_pool(size=3, start_eagerly=True)
    pids = codec_processes() - before
    assert len(pids) == 3

    pool.close()
    pool.close()

    assert [pid for pid in pids if running(pid)] == []
    assert codec_processes().isdisjoint(pids)
    with pytest.raises(DependencyUnavailable) as raised:
        pid_of(pool)
    assert raised.value.dependency == "codec"


def test_close_kills_a_busy_worker_and_its_caller_is_told(make_pool: Any, tmp_path: Path) -> None:
    pool = make_pool(size=1)
    worker = pid_of(pool)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            pool.transform(script(do="sleep", seconds=60, folder=str(tmp_path)), ANY, LIMITS)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert wait_until_started(tmp_path) == {worker}
    pool.close()
    caller.join(PATIENCE_SECONDS)

    assert not caller.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], DependencyUnavailable)
    assert not running(worker)


def test_the_context_manager_closes_the_pool() -> None:
    with ProcessPoolImageCodec(1, GENEROUS_LIMIT, ScriptedImageCodec) as pool:
        worker = pid_of(pool)
    assert not running(worker)


def test_workers_exit_when_their_parent_dies(tmp_path: Path) -> None:
    # A parent that starts an idle worker and a busy one, then dies without closing anything.
    started = tmp_path / "started"
    started.mkdir()
    program = f"""
import os, sys, threading
from pathlib import Path
sys.path.insert(0, {str(ROOT)!r})
from tests.integration.test_process_pool_codec import (
    ScriptedImageCodec, script, ANY, LIMITS, codec_processes, wait_until_started
)
from imgproc_core.adapters.process_pool import ProcessPoolImageCodec

if __name__ == "__main__":
    pool = ProcessPoolImageCodec(2, 60, ScriptedImageCodec, start_eagerly=True)
    job = script(do="sleep", seconds=60, folder={str(started)!r})
    busy = threading.Thread(target=pool.transform, args=(job, ANY, LIMITS), daemon=True)
    busy.start()
    wait_until_started(Path({str(started)!r}))
    print(" ".join(map(str, codec_processes())), flush=True)
    os._exit(0)
"""
    path = tmp_path / "parent.py"
    path.write_text(program)
    # A file, not a pipe: the workers inherit the parent's output, and a pipe would stay open
    # for as long as they live.
    output = tmp_path / "output.txt"
    with output.open("w") as out:
        done = subprocess.run([sys.executable, str(path)], stdout=out, stderr=out, timeout=60)
    assert done.returncode == 0, output.read_text()
    # The first line: multiprocessing's resource tracker may warn after it, on the same file,
    # about the semaphores the parent left behind.
    pids = [int(pid) for pid in output.read_text().splitlines()[0].split()]
    assert len(pids) == 2

    wait_until_gone(pids)


# -- construction --------------------------------------------------------------------------------


def test_fork_and_unimportable_factories_are_refused() -> None:
    with pytest.raises(ValueError, match="fork"):
        ProcessPoolImageCodec(1, 1.0, mp_context="fork")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="codec_factory"):
        ProcessPoolImageCodec(1, 1.0, lambda: PillowImageCodec())
    with pytest.raises(ValueError, match="at least one"):
        ProcessPoolImageCodec(0, 1.0)
    with pytest.raises(ValueError, match="time limit"):
        ProcessPoolImageCodec(1, 0)


# -- wiring --------------------------------------------------------------------------------------


def test_with_worker_processes_jobs_run_in_a_pool_that_closes_with_the_container(
    corpus_dir: Path,
) -> None:
    settings = settings_for_tests(worker_processes=2, job_time_limit_seconds=45.0)
    before = codec_processes()
    container = build_container(settings)
    container.init_resources()
    try:
        pool = container.job_codec()
        assert isinstance(pool, ProcessPoolImageCodec)
        assert (pool.size, pool.time_limit_seconds) == (2, 45.0)
        assert container.process_transform_job()._codec is pool
        # Uploads are still probed in process.
        assert isinstance(container.codec(), PillowImageCodec)
        assert container.upload_image()._codec is container.codec()
        data = (corpus_dir / "pillow" / "hopper.png").read_bytes()
        pool.transform(data, parse_transformation({"resize": {"width": 16}}), LIMITS)
        workers = codec_processes() - before
        assert len(workers) == 2
    finally:
        container.shutdown_resources()

    wait_until_gone(list(workers))
    assert codec_processes().isdisjoint(workers)


def test_without_worker_processes_jobs_run_on_the_codec_in_process() -> None:
    container = build_container(settings_for_tests(worker_processes=0))
    container.init_resources()

    assert container.job_codec() is container.codec()
    assert container.process_transform_job()._codec is container.codec()
    container.shutdown_resources()


def test_the_test_container_fakes_the_codec_of_jobs_too() -> None:
    container = build_test_container(settings_for_tests(worker_processes=2))

    assert isinstance(container.job_codec(), InMemoryImageCodec)
    assert container.job_codec() is container.codec()
