"""The production profile as real processes, for end-to-end tests: ``imgproc serve``,
``imgproc relay`` and ``imgproc worker`` on a :class:`~tests.support.production.ProductionStack`
(PostgreSQL, Kafka, the storage emulator and Redis), which a test starts, kills and reads the
logs of; and the development services themselves, which a test stops and starts.

``deployment(stack, folder)`` yields a :class:`Deployment`; every process it started and that is
still running at the end gets SIGTERM (SIGKILL past a deadline). Each process writes its output
to a log file of its own in ``folder``; a worker's log says which partitions it holds and what
became of each job it handled, which is how the tests tell the workers' shares apart.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import httpx
import pytest
from kafka.partitioner.default import murmur2

from imgproc_core.container import Container
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus
from tests.e2e.conftest import Api, HttpClient, _free_port, _imgproc_command
from tests.support.production import (
    ROOT,
    ProductionStack,
    production_stack,
    python_module_command,
)
from tests.support.waiting import wait_until

#: How long a test waits for a process to start, a job to end, a service to come back (a
#: deadline, not a timing assertion).
START_DEADLINE_SECONDS: Final = 90.0
JOB_DEADLINE_SECONDS: Final = 180.0
EXIT_DEADLINE_SECONDS: Final = 60.0
SHARING_DEADLINE_SECONDS: Final = 60.0
SERVICE_SCRIPTS: Final = ROOT / "scripts" / "services"

#: Settings of every production test stack besides the stack's own: cheap bcrypt, quick
#: retries, and rate limits no test reaches unless it means to.
TEST_SETTINGS: Final[dict[str, Any]] = {
    "bcrypt_rounds": 4,
    "job_backoff_seconds": 0.1,
    "rate_limit_upload": "10000/minute",
    "rate_limit_transform": "10000/minute",
    "rate_limit_auth": "10000/minute",
}

_ASSIGNMENT: Final = re.compile(r"imgproc_worker\.consumer: (assigned|revoked|lost) (.*)$")
_OUTCOME: Final = re.compile(r"imgproc_core\.use_cases\.job_runner: job (\S+): ([a-z_]+)$")
_PARTITION: Final = re.compile(r"\[(\d+)\]")


# -- processes ---------------------------------------------------------------------------------


@dataclass
class RunningProcess:
    """One started process and the file its output goes to."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: nothing is finished, committed or released."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=EXIT_DEADLINE_SECONDS)

    def terminate(self) -> int:
        """SIGTERM, then the exit status once the process has wound down."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=EXIT_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"{self.name} did not stop on SIGTERM:\n{self.tail()}")

    def wait_for_exit(self) -> int:
        try:
            return self.process.wait(timeout=EXIT_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit:\n{self.tail()}")

    def wait_for_line(self, pattern: str, deadline: float = START_DEADLINE_SECONDS) -> str:
        """The first line of the log that ``pattern`` is found in; fails if the process exits
        or the deadline passes first."""
        expression = re.compile(pattern)

        def found() -> str | None:
            for line in self.log().splitlines():
                if expression.search(line):
                    return line
            if not self.running:
                pytest.fail(f"{self.name} exited ({self.process.returncode}):\n{self.tail()}")
            return None

        return wait_until(
            found,
            timeout=deadline,
            interval=0.05,
            message=lambda: f"{self.name} never logged {pattern!r}:\n{self.tail()}",
        )

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


@dataclass
class ApiProcess(RunningProcess):
    base_url: str = ""

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def wait_until_healthy(self) -> None:
        def healthy() -> bool:
            if self.healthy():
                return True
            if not self.running:
                pytest.fail(f"{self.name} exited ({self.process.returncode}):\n{self.tail()}")
            return False

        wait_until(
            healthy,
            timeout=START_DEADLINE_SECONDS,
            interval=0.1,
            message=lambda: f"{self.name} did not answer /healthz in time:\n{self.tail()}",
        )

    @contextmanager
    def api(self) -> Iterator[Api]:
        with httpx.Client(base_url=self.base_url, timeout=30) as http:
            # The driver's protocol spells httpx's signatures more loosely than httpx does.
            yield Api(cast(HttpClient, http))


@dataclass
class WorkerProcess(RunningProcess):
    def partitions(self) -> set[int]:
        """The partitions the worker holds now, by what it logged."""
        held: set[int] = set()
        for line in self.log().splitlines():
            match = _ASSIGNMENT.search(line)
            if match is None:
                continue
            numbers = {int(number) for number in _PARTITION.findall(match.group(2))}
            if match.group(1) == "assigned":
                held |= numbers
            else:
                held -= numbers
        return held

    def outcomes(self) -> Counter[str]:
        """How many messages ended in each :class:`~imgproc_core.use_cases.JobOutcomeStatus`."""
        return Counter(status for _, status in self.handled())

    def handled(self) -> list[tuple[str, str]]:
        """Each message the worker finished: its job (the derived image's id) and outcome."""
        return [
            (match.group(1), match.group(2))
            for match in map(_OUTCOME.search, self.log().splitlines())
            if match is not None
        ]


@dataclass
class Deployment:
    stack: ProductionStack
    folder: Path
    processes: list[RunningProcess] = field(default_factory=list)

    def _launch(self, name: str, command: list[str], env: dict[str, str]) -> tuple[Any, Path]:
        log_path = self.folder / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                env=env,
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return process, log_path

    def _name(self, role: str) -> str:
        return f"{role}-{sum(p.name.startswith(role) for p in self.processes) + 1}"

    def start_api(self, **settings: str) -> ApiProcess:
        """``imgproc serve`` on a free port; see :meth:`wait_until_healthy`."""
        name = self._name("api")
        port = _free_port()
        command = [*_imgproc_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
        process, log_path = self._launch(name, command, self.stack.env(**settings))
        started = ApiProcess(name, process, log_path, base_url=f"http://127.0.0.1:{port}")
        self.processes.append(started)
        return started

    def start_relay(self, module: str | None = None, **settings: str) -> RunningProcess:
        """``imgproc relay``, or ``python -m module`` in its place."""
        name = self._name("relay")
        command = (
            [*_imgproc_command(), "relay"] if module is None else python_module_command(module)
        )
        process, log_path = self._launch(name, command, self.stack.env(**settings))
        started = RunningProcess(name, process, log_path)
        self.processes.append(started)
        return started

    def start_worker(
        self, codec_delay_seconds: float | None = None, **settings: str
    ) -> WorkerProcess:
        """``imgproc worker``; with ``codec_delay_seconds``, the worker whose codec sleeps that
        long before each render (``tests.support.slow_worker``), so that a test can kill it
        while it holds jobs."""
        name = self._name("worker")
        if codec_delay_seconds is None:
            command = [*_imgproc_command(), "worker"]
        else:
            command = python_module_command("tests.support.slow_worker")
            settings = {"test_codec_delay_seconds": str(codec_delay_seconds), **settings}
        process, log_path = self._launch(name, command, self.stack.env(**settings))
        started = WorkerProcess(name, process, log_path)
        self.processes.append(started)
        return started

    def wait_until_healthy(self, *apis: ApiProcess) -> None:
        for api in apis:
            api.wait_until_healthy()

    def wait_until_relaying(self, *relays: RunningProcess) -> None:
        for relay in relays:
            relay.wait_for_line(r"relaying the outbox to ")

    def wait_until_sharing(self, workers: Sequence[WorkerProcess]) -> dict[str, set[int]]:
        """Wait until every partition of the job topic is held by exactly one of ``workers``
        and each holds at least one; their shares."""
        everything = set(range(self.stack.topics.partitions))
        shares: dict[str, set[int]] = {}

        def shared() -> bool:
            nonlocal shares
            shares = {worker.name: worker.partitions() for worker in workers}
            held = [number for share in shares.values() for number in share]
            if sorted(held) == sorted(everything) and all(shares.values()):
                return True
            _fail_if_any_exited(workers)
            return False

        def never_shared() -> str:
            logs = "\n\n".join(f"{worker.name}:\n{worker.tail()}" for worker in workers)
            return (
                f"the workers never shared the partitions: {shares} (a worker that holds "
                "nothing and logged nothing since 'No partition metadata for topic' is "
                f"stuck in its consumer's poll)\n{logs}"
            )

        wait_until(shared, timeout=SHARING_DEADLINE_SECONDS, interval=0.1, message=never_shared)
        return shares

    def stop_all(self) -> None:
        """SIGTERM to every process still running, all at once, then wait for each."""
        running = [started for started in self.processes if started.running]
        for started in running:
            started.process.send_signal(signal.SIGTERM)
        for started in running:
            try:
                started.process.wait(timeout=EXIT_DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                started.process.kill()
                started.process.wait()


@contextmanager
def deployment(stack: ProductionStack, folder: Path) -> Iterator[Deployment]:
    folder.mkdir(parents=True, exist_ok=True)
    deployed = Deployment(stack, folder)
    try:
        yield deployed
    finally:
        deployed.stop_all()


# -- the development services ------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceScript:
    """``scripts/services/<name>.sh``: the test services' own start, stop and crash."""

    name: str

    def run(self, command: str, timeout: float = 300.0) -> str:
        """``<name>.sh command``'s output; fails the test if it fails."""
        script = SERVICE_SCRIPTS / f"{self.name}.sh"
        done = subprocess.run(
            [str(script), command], capture_output=True, text=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, (
            f"{script.name} {command} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
        return done.stdout.strip()

    def start(self) -> None:
        self.run("start")

    def stop(self) -> None:
        self.run("stop")

    def kill9(self) -> None:
        self.run("kill9")


@contextmanager
def restarted_at_exit(service: ServiceScript) -> Iterator[ServiceScript]:
    """``service``, started again on the way out whatever happened, since every other test
    needs it running."""
    try:
        yield service
    finally:
        service.start()


# -- what a test asks of the API ---------------------------------------------------------------


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (the relay keys each job by its
    source image's id)."""
    hashed: int = murmur2(key.encode())
    return (hashed & 0x7FFFFFFF) % partitions


def upload_sources_on_every_partition(
    api: Api, headers: dict[str, str], originals: Sequence[Path], partitions: int
) -> dict[int, list[str]]:
    """Upload originals (taking ``originals`` round and round) until the job of each partition
    has at least one source image keyed to it; the uploaded ids by partition."""
    by_partition: dict[int, list[str]] = {number: [] for number in range(partitions)}
    for attempt in range(partitions * 12):
        if all(by_partition.values()):
            return by_partition
        uploaded = api.upload(originals[attempt % len(originals)], headers)
        by_partition[partition_of(uploaded["id"], partitions)].append(uploaded["id"])
    pytest.fail(f"{partitions * 12} uploads left a partition without a source: {by_partition}")


def spread(by_partition: dict[int, list[str]], count: int) -> list[str]:
    """``count`` source ids, taking the partitions in turn and each partition's sources in turn,
    so that every partition gets an equal share of the jobs."""
    order = sorted(by_partition)
    turns: dict[int, int] = dict.fromkeys(order, 0)
    chosen: list[str] = []
    for n in range(count):
        number = order[n % len(order)]
        sources = by_partition[number]
        chosen.append(sources[turns[number] % len(sources)])
        turns[number] += 1
    return chosen


def distinct_spec(n: int) -> dict[str, Any]:
    """The ``n``-th of many small, different transformations (PNG or JPEG, at most 47 px)."""
    return {
        "resize": {"width": 8 + n % 40, "height": 8 + n // 40 % 40, "fit": "fill"},
        "format": ("png", "jpeg")[n % 2],
    }


@dataclass
class Burst:
    """Transform requests sent from several threads at once, each on its own connection."""

    answers: list[httpx.Response] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def statuses(self) -> Counter[int]:
        return Counter(response.status_code for response in self.answers)

    def entries(self) -> list[dict[str, Any]]:
        assert self.statuses == Counter({200: len(self.answers)}), self.statuses
        return [response.json() for response in self.answers]


def transform_burst(
    base_urls: Sequence[str],
    headers: dict[str, str],
    requests: Sequence[tuple[str, dict[str, Any]]],
    threads: int = 4,
    between: Callable[[int], object] | None = None,
) -> Burst:
    """Send ``requests`` (source id, transformation), the ``n``-th to ``base_urls[n % len]``,
    from ``threads`` threads; the answers in the order of ``requests``. ``between(n)`` runs in
    the sending thread before the ``n``-th request (to pace a burst, or to act in its middle)."""
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def client(base_url: str) -> httpx.Client:
        mine: dict[str, httpx.Client] = getattr(local, "clients", {})
        local.clients = mine
        if base_url not in mine:
            mine[base_url] = httpx.Client(base_url=base_url, timeout=60)
            with lock:
                clients.append(mine[base_url])
        return mine[base_url]

    def send(n: int) -> httpx.Response:
        if between is not None:
            between(n)
        source, body = requests[n]
        return client(base_urls[n % len(base_urls)]).post(
            f"/api/v1/images/{source}/transform", json=body, headers=headers
        )

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(threads, thread_name_prefix="burst") as pool:
            answers = list(pool.map(send, range(len(requests))))
    finally:
        for opened in clients:
            opened.close()
    return Burst(answers, time.monotonic() - started)


def derived_images(container: Container, sources: Sequence[str]) -> list[Image]:
    """Every derived image of ``sources``, read from the database."""
    with container.unit_of_work() as uow:
        return [
            image
            for source in sorted(set(sources))
            for image in uow.images.list_derivatives(source)
        ]


def wait_until_settled(
    container: Container,
    sources: Sequence[str],
    expected: int,
    deadline: float = JOB_DEADLINE_SECONDS,
    watch: Sequence[RunningProcess] = (),
) -> list[Image]:
    """The derived images of ``sources`` once there are ``expected`` and none is PENDING or
    PROCESSING; fails at the deadline, or when a process of ``watch`` has died."""
    images: list[Image] = []
    statuses: Counter[str] = Counter()

    def settled() -> bool:
        nonlocal images, statuses
        images = derived_images(container, sources)
        statuses = Counter(image.status.value for image in images)
        if (
            len(images) == expected
            and statuses[JobStatus.PENDING] + statuses[JobStatus.PROCESSING] == 0
        ):
            return True
        _fail_if_any_exited(watch)
        return False

    def unsettled() -> str:
        logs = "\n\n".join(f"{started.name}:\n{started.tail(30)}" for started in watch)
        return f"{len(images)} images, {dict(statuses)}\n{logs}"

    wait_until(settled, timeout=deadline, interval=0.2, message=unsettled)
    return images


@contextmanager
def production_deployment(
    tmp_path: Path, partitions: int = 3, **settings: Any
) -> Iterator[tuple[ProductionStack, Deployment]]:
    """A fresh production stack (its own database, topics and bucket; Redis for limits and
    URLs) and a :class:`Deployment` on it, whose processes stop before the stack goes."""
    with (
        production_stack(
            tmp_path, partitions, gcs=True, redis=True, **(TEST_SETTINGS | settings)
        ) as stack,
        deployment(stack, tmp_path / "processes") as deployed,
    ):
        yield stack, deployed


def wait_until_ready_count(
    container: Container,
    sources: Sequence[str],
    at_least: int,
    watch: Sequence[RunningProcess] = (),
) -> int:
    """Wait until at least ``at_least`` derived images of ``sources`` are READY; how many are."""
    ready = 0

    def enough_ready() -> bool:
        nonlocal ready
        ready = sum(image.status is JobStatus.READY for image in derived_images(container, sources))
        if ready >= at_least:
            return True
        _fail_if_any_exited(watch)
        return False

    wait_until(
        enough_ready,
        timeout=JOB_DEADLINE_SECONDS,
        interval=0.05,
        message=lambda: f"only {ready} of {at_least} images READY",
    )
    return ready


def _fail_if_any_exited(watch: Sequence[RunningProcess]) -> None:
    for started in watch:
        if not started.running:
            pytest.fail(f"{started.name} exited:\n{started.tail()}")
