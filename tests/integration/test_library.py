"""The core as a library: the examples of docs/library.md, each run as it stands in a fresh
virtual environment that holds imgproc-core with only the extras the example names (no shell),
at the versions of uv.lock."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY_DOC = ROOT / "docs" / "library.md"
_EXAMPLE = re.compile(r"<!-- example: extras=([\w,-]*) -->\n```python\n(.*?)\n```", re.DOTALL)
#: A package of each extra that the environment of an example without it must not hold.
_PACKAGE_OF_EXTRA = {
    "container": "dependency_injector",
    "pillow": "PIL",
    "auth": "bcrypt",
    "sql": "sqlalchemy",
    "redis": "redis",
    "kafka": "kafka",
    "gcs": "google.cloud.storage",
}
_EMBEDDED = {"pillow", "process-pool", "auth", "sql", "container"}


@dataclass(frozen=True)
class Example:
    number: int
    extras: str
    code: str


def library_examples() -> list[Example]:
    found = _EXAMPLE.findall(LIBRARY_DOC.read_text())
    return [Example(n, extras, code) for n, (extras, code) in enumerate(found, 1)]


def _uv() -> str:
    return subprocess.run(
        [str(ROOT / "scripts" / "bootstrap-uv.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()


def _run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=cwd, env=environment, timeout=600
    )
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def environments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The Python of a fresh environment per set of extras the examples name."""
    uv = _uv()
    root = tmp_path_factory.mktemp("library")
    constraints = root / "constraints.txt"
    _run(
        uv, "export", "--frozen", "--all-packages", "--all-extras", "--no-hashes",
        "--no-emit-workspace", "--no-header", "--output-file", str(constraints),
        cwd=ROOT,
    )  # fmt: skip
    pythons: dict[str, Path] = {}
    for extras in {example.extras for example in library_examples()}:
        venv = root / f"venv-{extras or 'bare'}"
        _run(uv, "venv", "--quiet", "--python", sys.executable, str(venv))
        python = venv / "bin" / "python"
        requirement = f"{ROOT / 'imgproc_core'}[{extras}]" if extras else str(ROOT / "imgproc_core")
        _run(
            uv, "pip", "install", "--quiet", "--python", str(python),
            "--constraint", str(constraints), requirement,
        )  # fmt: skip
        pythons[extras] = python
    return pythons


def test_the_library_guide_has_an_example_for_each_way_of_using_the_core() -> None:
    extras = [example.extras for example in library_examples()]
    assert extras == ["container", "embedded", ""]


@pytest.mark.parametrize(
    "example", library_examples(), ids=lambda example: f"example{example.number}"
)
def test_each_example_of_the_library_guide_runs_with_only_the_extras_it_names(
    example: Example, environments: dict[str, Path], tmp_path: Path
) -> None:
    python = environments[example.extras]
    named = set(example.extras.split(",")) - {""}
    if "embedded" in named:
        named |= _EMBEDDED
    absent = sorted(package for extra, package in _PACKAGE_OF_EXTRA.items() if extra not in named)
    probe = (
        "import importlib.util, sys\n"
        f"present = [p for p in {absent!r} + ['imgproc_http', 'imgproc_worker', 'imgproc_cli']"
        " if importlib.util.find_spec(p.split('.')[0]) is not None]\n"
        "sys.exit(f'installed though not named: {present}' if present else 0)\n"
    )
    # Run away from the repository, whose folders would pass for namespace packages.
    _run(str(python), "-c", probe, cwd=tmp_path)

    script = tmp_path / f"example{example.number}.py"
    script.write_text(example.code + "\n")
    done = _run(str(python), str(script), cwd=tmp_path)
    assert done.stdout.strip(), "every example prints what it made"
