"""The core's inner layers speak only the standard library and msgspec.

import-linter (``make lint``) checks the layering between packages; this test checks the other
half of the rule, which no forbidden-list can: that ``domain``, ``ports`` and ``use_cases`` import
nothing outside an allow-list, whatever gets installed next.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "imgproc_core" / "src" / "imgproc_core"
INNER_LAYERS = ("domain", "ports", "use_cases")
ALLOWED_THIRD_PARTY = {"msgspec"}
ALLOWED_OWN = {f"imgproc_core.{layer}" for layer in INNER_LAYERS}
SHELLS = ("imgproc_http", "imgproc_worker", "imgproc_cli")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _inner_modules() -> list[Path]:
    return sorted(path for layer in INNER_LAYERS for path in (CORE / layer).rglob("*.py"))


def _is_allowed(module: str) -> bool:
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY:
        return True
    return any(module == own or module.startswith(own + ".") for own in ALLOWED_OWN)


def test_inner_layers_exist() -> None:
    assert len(_inner_modules()) >= 10


@pytest.mark.parametrize("path", _inner_modules(), ids=lambda p: str(p.relative_to(CORE)))
def test_inner_layers_import_only_stdlib_and_msgspec(path: Path) -> None:
    offending = [
        f"line {line}: {module}" for line, module in _imports(path) if not _is_allowed(module)
    ]
    assert not offending, f"{path.relative_to(CORE)} imports outside the allow-list: {offending}"


def test_core_never_imports_a_shell() -> None:
    offending = [
        f"{path.relative_to(CORE)} line {line}: {module}"
        for path in sorted(CORE.rglob("*.py"))
        for line, module in _imports(path)
        if module.split(".")[0] in SHELLS
    ]
    assert not offending


def test_the_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom PIL import Image\nimport imgproc_core.adapters.pillow\n")
    refused = [module for _, module in _imports(sample) if not _is_allowed(module)]
    assert refused == ["PIL", "imgproc_core.adapters.pillow"]
