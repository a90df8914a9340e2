"""Batch transforms of local files with the service's own pipeline.

Each file goes through the core's render pipeline (:mod:`imgproc_core.use_cases.pipeline`),
what an upload and its job go through: the size limit, the codec's probe (type from the magic
bytes, pixel and frame limits from the header, integrity), the transformation resolved against
the source's format (its default output format and quality), the output size checked against
the limits, then the codec's transform. The codec is the container's job codec, a pool of worker
processes, so every core is busy and each image runs under the job time limit; a file that
fails is reported with its reason and the others go on.

Output names are decided before anything runs, from the inputs alone, so they do not depend
on the number of processes, on which inputs fail, or on the order in which they finish.
"""

from __future__ import annotations

import glob
import hashlib
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from imgproc_core.domain.errors import DomainError, ImageTooLarge
from imgproc_core.domain.formats import EXTENSIONS
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Transformation
from imgproc_core.ports import ImageCodec
from imgproc_core.use_cases.pipeline import render_original

_GLOB_CHARACTERS: Final = frozenset("*?[")
#: Hex digits of the path hash that sets apart inputs whose names would collide.
_HASH_DIGITS: Final = 8


@dataclass(frozen=True, slots=True)
class Source:
    """A file to transform; ``shown`` is its path as the command line named it."""

    path: Path
    shown: str


@dataclass(frozen=True, slots=True)
class Inputs:
    sources: list[Source]
    #: Arguments that named nothing: no such file or folder, or a pattern that matched none.
    missing: list[str]


def find_inputs(arguments: Sequence[str], *, skip: Path | None = None) -> Inputs:
    """The files that ``arguments`` name: files as they are, folders searched recursively
    (hidden files and folders left out), glob patterns (``**`` included) expanded. Each file
    comes once, in the order of the arguments, a folder's files sorted; anything under
    ``skip`` (the output folder) is left out."""
    skipped = skip.resolve() if skip is not None else None
    seen: set[Path] = set()
    sources: list[Source] = []
    missing: list[str] = []
    for argument in arguments:
        found = list(_expand(argument))
        if not found:
            missing.append(argument)
        for path, shown in found:
            resolved = path.resolve()
            if resolved in seen or (skipped is not None and resolved.is_relative_to(skipped)):
                continue
            seen.add(resolved)
            sources.append(Source(path, shown))
    return Inputs(sources, missing)


def _expand(argument: str) -> Iterator[tuple[Path, str]]:
    if not argument:
        return
    path = Path(argument)
    if path.is_file():
        yield path, path.as_posix()
    elif path.is_dir():
        yield from _walk(path)
    elif _GLOB_CHARACTERS & set(argument):
        for match in sorted(glob.glob(argument, recursive=True)):
            matched = Path(match)
            if matched.is_file():
                yield matched, matched.as_posix()
            elif matched.is_dir():
                yield from _walk(matched)


def _walk(folder: Path) -> Iterator[tuple[Path, str]]:
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if not name.startswith(".") and path.is_file():
                yield path, path.as_posix()


def output_stems(sources: Sequence[Source]) -> list[str]:
    """The output name of each source, without its extension: the source's own stem, or, for
    sources whose stems are the same but for case (``a/photo.jpg`` and ``b/Photo.png``), the
    stem followed by a short hash of the path as the command line named it."""
    counts = Counter(source.path.stem.casefold() for source in sources)
    stems = []
    for source in sources:
        stem = source.path.stem
        if counts[stem.casefold()] > 1:
            digest = hashlib.sha256(source.shown.encode()).hexdigest()[:_HASH_DIGITS]
            stem = f"{stem}-{digest}"
        stems.append(stem)
    return stems


@dataclass(frozen=True, slots=True)
class Converted:
    source: Source
    output: Path
    format: str
    width: int
    height: int
    frames: int
    bytes_in: int
    bytes_out: int


@dataclass(frozen=True, slots=True)
class Failed:
    source: Source
    #: A domain error's code (``corrupt_image``...), ``unreadable``, ``not_written`` or
    #: ``error`` for anything unexpected.
    code: str
    reason: str


Outcome = Converted | Failed


def _too_large(limits: Limits) -> ImageTooLarge:
    limit = limits.max_upload_bytes
    return ImageTooLarge(
        f"the file is larger than the limit of {limit} bytes (IMGPROC_MAX_UPLOAD_BYTES)",
        limit_bytes=limit,
    )


class _NotWritten(Exception):
    pass


class BatchTransform:
    """Transform files into ``out_dir`` with ``jobs`` images in flight at once.

    ``probe`` checks each file in this process (its checks read the header and little more);
    ``codec`` renders it, in worker processes when it is the process-pool codec.
    """

    def __init__(
        self,
        transformation: Transformation,
        *,
        probe: ImageCodec,
        codec: ImageCodec,
        limits: Limits,
        out_dir: Path,
        jobs: int,
    ) -> None:
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        self._transformation = transformation
        self._probe = probe
        self._codec = codec
        self._limits = limits
        self._out_dir = out_dir
        self._jobs = jobs

    def __call__(
        self, sources: Sequence[Source], done: Callable[[Outcome], None] | None = None
    ) -> list[Outcome]:
        """The outcome of each source, in the order of ``sources``; ``done`` hears of each as
        it ends."""
        stems = output_stems(sources)
        outcomes: list[Outcome | None] = [None] * len(sources)
        executor = ThreadPoolExecutor(max_workers=self._jobs, thread_name_prefix="imgproc-batch")
        try:
            futures = {
                executor.submit(self._one, source, stem): index
                for index, (source, stem) in enumerate(zip(sources, stems, strict=True))
            }
            for future in as_completed(futures):
                outcome = future.result()
                outcomes[futures[future]] = outcome
                if done is not None:
                    done(outcome)
        finally:
            # On an interrupt, what has not started is dropped; what runs ends with the codec.
            executor.shutdown(wait=True, cancel_futures=True)
        return [outcome for outcome in outcomes if outcome is not None]

    def _one(self, source: Source, stem: str) -> Outcome:
        try:
            return self._convert(source, stem)
        except DomainError as exc:
            return Failed(source, exc.code, exc.message)
        except _NotWritten as exc:
            return Failed(source, "not_written", str(exc))
        except OSError as exc:
            return Failed(source, "unreadable", exc.strerror or str(exc))
        except Exception as exc:
            return Failed(source, "error", f"{type(exc).__name__}: {exc}")

    def _convert(self, source: Source, stem: str) -> Converted:
        if source.path.stat().st_size > self._limits.max_upload_bytes:
            # Refused before it is read, as an upload is while it streams.
            raise _too_large(self._limits)
        data = source.path.read_bytes()
        encoded = render_original(
            data, self._transformation, probe=self._probe, codec=self._codec, limits=self._limits
        )
        output = self._out_dir / f"{stem}.{EXTENSIONS[encoded.format]}"
        self._write(output, encoded.data)
        return Converted(
            source=source,
            output=output,
            format=encoded.format,
            width=encoded.width,
            height=encoded.height,
            frames=encoded.frames,
            bytes_in=len(data),
            bytes_out=len(encoded.data),
        )

    @staticmethod
    def _write(output: Path, data: bytes) -> None:
        # Whole or not at all: a file is only ever seen complete under its name.
        partial = output.with_name(f".{output.name}.{uuid.uuid4().hex[:8]}.partial")
        try:
            partial.write_bytes(data)
            partial.replace(output)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise _NotWritten(f"{output}: {exc.strerror or exc}") from exc
