"""``imgproc transform``: the service's pipeline on local files, in worker processes.

Real images from the corpus, with a corrupt file, an SVG and a text file among them: the good
ones give outputs that Pillow decodes to what was asked, the bad ones are reported with their
reasons, and the outputs are the same bytes whatever the number of processes.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support.cli import Cli, embedded_settings, environment_for

logger = logging.getLogger(__name__)

COVER_WEBP = '{"resize": {"width": 40, "height": 40, "fit": "cover"}, "format": "webp"}'


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return Cli(environment_for(embedded_settings(tmp_path / "service")))


@pytest.fixture
def bad_files(tmp_path: Path, corpus_dir: Path) -> dict[str, str]:
    """A truncated JPEG and an SVG in the working folder, with the code each must fail with."""
    photo = (corpus_dir / "pillow" / "flower.jpg").read_bytes()
    (tmp_path / "work" / "truncated.jpg").write_bytes(photo[: len(photo) // 3])
    (tmp_path / "work" / "drawing.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    )
    return {"truncated.jpg": "corrupt_image", "drawing.svg": "unsupported_image_type"}


def decoded(path: Path) -> Image.Image:
    image = Image.open(io.BytesIO(path.read_bytes()))
    image.load()
    return image


def outputs(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def corpus_files(corpus_dir: Path) -> list[Path]:
    return sorted(path for path in corpus_dir.rglob("*") if path.is_file())


def is_image(path: Path) -> bool:
    return path.suffix.lower() in {".png", ".jpg", ".gif", ".webp", ".tif", ".bmp", ".avif"}


def test_the_corpus_with_bad_files_mixed_in(
    cli: Cli, corpus_dir: Path, bad_files: dict[str, str]
) -> None:
    files = corpus_files(corpus_dir)
    images = [path for path in files if is_image(path)]
    others = [path for path in files if not is_image(path)]
    assert len(images) > 150
    assert others, "the corpus's licence and read-me files are among the inputs"

    result = cli(
        "transform", COVER_WEBP, str(corpus_dir), *bad_files, "--out", "out", "--json", expect=1
    )

    summary: dict[str, Any] = json.loads(result.stdout)
    # Failures are in the summary; nothing else is said, on either stream.
    assert result.stderr == ""
    logger.info(
        "%d inputs in %.2f s on %d processes",
        summary["inputs"],
        summary["seconds"],
        summary["jobs"],
    )
    failures = {Path(item["input"]).name: item["code"] for item in summary["failures"]}
    assert {name: failures.get(name) for name in bad_files} == bad_files
    assert {Path(item["input"]) for item in summary["failures"]} == {
        *(Path(name) for name in bad_files),
        *others,
    }
    assert {failures[path.name] for path in others} == {"unsupported_image_type"}
    assert summary["done"] == len(images)
    assert summary["failed"] == len(others) + len(bad_files)
    assert summary["inputs"] == len(files) + len(bad_files)
    written = sorted(Path("out").iterdir())
    assert len(written) == len(images)
    assert sorted(Path(item["output"]).name for item in summary["outputs"]) == [
        path.name for path in written
    ]
    for path in written:
        image = decoded(path)
        assert (image.format, image.size) == ("WEBP", (40, 40)), path
    assert summary["bytes_out"] == sum(path.stat().st_size for path in written)
    assert summary["bytes_in"] == sum(
        Path(item["input"]).stat().st_size for item in summary["outputs"]
    )
    by_input = {Path(item["input"]).name: item for item in summary["outputs"]}
    # Animations keep their frames.
    assert by_input["iss634.gif"]["frames"] == 42


def test_the_outputs_are_the_same_bytes_whatever_the_number_of_processes(
    cli: Cli, corpus_dir: Path
) -> None:
    # No format asked: each keeps its source's (JPEG, PNG, GIF, WebP, AVIF; TIFF and BMP
    # become PNG), so every encoder is covered.
    spec = '{"resize": {"width": 64}, "sharpen": 1, "watermark": {"text": "imgproc"}}'
    source = str(corpus_dir / "pillow")

    cli("transform", spec, source, "--out", "one", "--jobs", "1", expect=1)
    cli("transform", spec, source, "--out", "two", "--jobs", "2", expect=1)
    cli("transform", spec, source, "--out", "three", "--jobs", "3", expect=1)

    first = outputs(Path("one"))
    assert len(first) == len(
        [path for path in corpus_files(corpus_dir / "pillow") if is_image(path)]
    )
    assert {name.rsplit(".", 1)[1] for name in first} == {"jpg", "png", "gif", "webp", "avif"}
    assert outputs(Path("two")) == first
    assert outputs(Path("three")) == first


def test_a_summary_table_lists_what_failed_and_why(
    cli: Cli, corpus_dir: Path, bad_files: dict[str, str]
) -> None:
    result = cli(
        "transform",
        '{"grayscale": true}',
        str(corpus_dir / "pillow" / "hopper.png"),
        "truncated.jpg",
        "missing.png",
        "--out",
        "out",
        expect=1,
    )

    assert "2 failed" in result.stdout
    assert "truncated.jpg" in result.stdout
    assert "corrupt_image" in result.stdout
    assert "missing.png" in result.stdout
    assert "not_found" in result.stdout
    assert "done" in result.stdout
    assert decoded(Path("out") / "hopper.png").mode in {"L", "LA"}


def test_a_spec_file_and_good_inputs_only_exit_zero(cli: Cli, corpus_dir: Path) -> None:
    Path("spec.json").write_text('{"transformations": {"rotate": 90, "format": "jpg"}}')

    result = cli(
        "transform", "spec.json", str(corpus_dir / "pillow" / "flower.jpg"), "-o", "out", "--json"
    )

    summary = json.loads(result.stdout)
    assert (summary["done"], summary["failed"], summary["failures"]) == (1, 0, [])
    assert (summary["outputs"][0]["width"], summary["outputs"][0]["height"]) == (360, 480)
    assert decoded(Path("out") / "flower.jpg").size == (360, 480)


def test_names_that_would_collide_get_a_hash_of_their_path(cli: Cli, corpus_dir: Path) -> None:
    pillow = corpus_dir / "pillow"
    for folder, source, name in (
        ("a", "hopper.png", "photo.png"),
        ("b", "flower.jpg", "photo.jpg"),
        ("b/deeper", "hopper.gif", "Photo.gif"),
        ("b", "hopper.bmp", "single.bmp"),
        ("b/.hidden", "hopper.png", "secret.png"),
    ):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(pillow / source, Path(folder) / name)

    def short_hash(shown: str) -> str:
        return hashlib.sha256(shown.encode()).hexdigest()[:8]

    first = cli("transform", '{"format": "png"}', "a", "b/**/*.*", "b", "--out", "out")
    expected = {
        f"photo-{short_hash('a/photo.png')}.png",
        f"photo-{short_hash('b/photo.jpg')}.png",
        f"Photo-{short_hash('b/deeper/Photo.gif')}.png",
        "single.png",
    }
    assert set(outputs(Path("out"))) == expected, first.stdout
    # The same command again gives the same names; an output folder among the inputs is not
    # an input.
    cli("transform", '{"format": "png"}', "a", "b", "--out", "b/out")
    cli("transform", '{"format": "png"}', "a", "b", "--out", "b/out")
    assert set(outputs(Path("b/out"))) == expected


def test_a_glob_pattern_is_expanded(cli: Cli, corpus_dir: Path) -> None:
    pattern = str(corpus_dir / "pillow" / "hopper_orientation_*.jpg")

    summary = json.loads(
        cli("transform", '{"format": "png"}', pattern, "--out", "out", "--json").stdout
    )

    assert summary["done"] == 7
    assert sorted(path.name for path in Path("out").iterdir()) == [
        f"hopper_orientation_{n}.png" for n in range(2, 9)
    ]
    assert {decoded(path).format for path in Path("out").iterdir()} == {"PNG"}


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ('{"resize": {"width": "big"}}', "resize.width"),
        ('{"zoom": 2}', "zoom"),
        ("{}", "at least one"),
        ('{"rotate": 45', "malformed JSON"),
        ('{"rotate": 45}', "multiple of 90"),
        ('{"watermark": {"image_id": "abc"}}', "text watermark"),
        ("no-such-spec.json", "neither a file nor a JSON object"),
    ],
)
def test_a_bad_spec_is_a_usage_error(cli: Cli, corpus_dir: Path, spec: str, says: str) -> None:
    result = cli(
        "transform", spec, str(corpus_dir / "pillow" / "hopper.png"), "--out", "out", expect=2
    )

    assert says in result.stderr
    assert "SPEC" in result.stderr
    assert not Path("out").exists()


def test_no_input_file_is_a_usage_error(cli: Cli) -> None:
    result = cli(
        "transform", '{"flip": true}', "missing.png", "nothing/*.jpg", "-o", "out", expect=2
    )

    assert "no input files" in result.stderr
    assert "missing.png" in result.stderr


@pytest.mark.parametrize("jobs", ["0", "-1", "257", "many"])
def test_jobs_out_of_range_is_a_usage_error(cli: Cli, corpus_dir: Path, jobs: str) -> None:
    cli(
        "transform",
        '{"flip": true}',
        str(corpus_dir / "pillow" / "hopper.png"),
        "-o",
        "out",
        "--jobs",
        jobs,
        expect=2,
    )


@pytest.mark.parametrize(
    ("terminal", "arguments", "shows_progress"),
    [
        ("1", [], True),
        ("1", ["--json"], False),
        ("0", [], False),
    ],
    ids=["terminal", "terminal-json", "pipe"],
)
def test_a_progress_bar_on_a_terminal_only_and_never_with_json(
    cli: Cli, corpus_dir: Path, terminal: str, arguments: list[str], shows_progress: bool
) -> None:
    # rich treats standard error as a terminal when TTY_COMPATIBLE=1, as if it were one.
    cli.environment["TTY_COMPATIBLE"] = terminal
    hopper = str(corpus_dir / "pillow" / "hopper.png")

    result = cli("transform", '{"flip": true}', hopper, "--out", "out", *arguments)

    assert ("transforming" in result.stderr) is shows_progress
    assert ("1/1" in result.stderr) is shows_progress
    if "--json" in arguments:
        assert json.loads(result.stdout)["done"] == 1
