"""Isolation and shared fixtures. Everything runs offline; the real embedder is loaded once."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from core.config import USER_DIR_ENV, Settings, load_settings, user_config_dir
from core.engine import Engine, open_engine
from tests.fakes import HashEmbedding
from tests.kbcopy import copy_kb

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "docs"


class Tripwire:
    """Stands in for LlamaIndex's global defaults: any implicit use fails the test."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attr: str) -> Any:
        raise AssertionError(f"LlamaIndex global Settings.{self.name} was used implicitly")


@pytest.fixture(scope="session")
def models_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of models built on first use (the ONNX graph), shared by the whole run: both
    `[embedding] model_cache` and the per-user default (`$XDG_CACHE_HOME/kb/models`) point here."""
    return tmp_path_factory.mktemp("cache") / "kb" / "models"


@pytest.fixture(scope="session")
def built_models(models_cache: Path) -> Path:
    """The models folder with the default ONNX graph already built (as after a first use), for
    tests whose output must not carry the one-time "Building the embedding model" line."""
    from core.e5onnx import build_or_load

    build_or_load(models_cache, "fp32")
    return models_cache


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_cache: Path) -> Path:
    """A private cwd, kb home and user settings folder; no KB_/OPENAI_ variables from the
    developer's shell, and never the developer's own ~/.config/kb; built models go to a folder of
    the test run, never the user's cache."""
    import llama_index.core

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for var in [
        v
        for v in os.environ
        if v.startswith(("KB_", "OPENAI_", "DEEPSEEK_", "DASHSCOPE_", "ZHIPUAI_"))
    ]:
        monkeypatch.delenv(var)
    home = tmp_path / "kbhome"
    monkeypatch.setenv("KB_KB__HOME", str(home))
    # The user settings folder: $KB_CONFIG_HOME for the environment, and the platform's fallback
    # (what `load_settings(environ={})` reads) moved under tmp too: XDG_CONFIG_HOME on Linux.
    monkeypatch.setenv(USER_DIR_ENV, str(tmp_path / "userconfig"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdgconfig"))
    fallback = user_config_dir({})
    if not fallback.is_relative_to(tmp_path):
        pytest.fail(f"the user settings folder {fallback} would leak into the tests")
    monkeypatch.setenv("KB_EMBEDDING__MODEL_CACHE", str(models_cache))
    monkeypatch.setenv("XDG_CACHE_HOME", str(models_cache.parents[1]))  # settings(environ={})
    monkeypatch.setattr(llama_index.core.Settings, "_llm", Tripwire("llm"))
    monkeypatch.setattr(llama_index.core.Settings, "_embed_model", Tripwire("embed_model"))
    return home


@pytest.fixture
def settings(isolated: Path) -> Settings:
    """Default settings with the kb home under tmp."""
    return load_settings(environ={}, overrides={"kb": {"home": str(isolated)}}).settings


@pytest.fixture
def make_settings(isolated: Path) -> Callable[..., Settings]:
    """Settings with some sections overridden."""

    def build(**sections: dict[str, Any]) -> Settings:
        overrides: dict[str, dict[str, Any]] = {"kb": {"home": str(isolated)}}
        for name, values in sections.items():
            overrides.setdefault(name, {}).update(values)
        return load_settings(environ={}, overrides=overrides).settings

    return build


@pytest.fixture
def hash_engine(settings: Settings) -> Iterator[Engine]:
    """A writable engine on a real Qdrant Edge store in tmp, with the hash embedder."""
    with open_engine(settings, purpose="write", embedder=HashEmbedding()) as engine:
        yield engine


@pytest.fixture
def docs(tmp_path: Path) -> Callable[[dict[str, str | bytes]], Path]:
    """Write a folder of files: {relative path: text or bytes}."""

    def write(files: dict[str, str | bytes], name: str = "docs") -> Path:
        root = tmp_path / name
        for rel, content in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        return root

    return write


@pytest.fixture
def runner() -> CliRunner:
    """Typer's runner; stdout and stderr are kept apart."""
    return CliRunner()


@pytest.fixture(scope="session")
def real_kb(tmp_path_factory: pytest.TempPathFactory, models_cache: Path) -> dict[str, Path]:
    """The bundled sample docs ingested once, with the real default embedder, for read-only tests.

    Tests copy `home` before writing to it. (A session fixture is set up before `isolated`, so it
    names the models folder itself.)
    """
    from core.ingest import ingest

    base = tmp_path_factory.mktemp("realkb")
    home = base / "home"
    docs_dir = base / "docs"
    shutil.copytree(EXAMPLES, docs_dir)
    overrides = {"kb": {"home": str(home)}, "embedding": {"model_cache": str(models_cache)}}
    settings = load_settings(environ={}, overrides=overrides).settings
    with open_engine(settings, purpose="write") as engine:
        report = ingest([docs_dir], engine)
    assert not report.problems, report.problems
    return {"home": home, "docs": docs_dir}


@pytest.fixture
def kb_copy(real_kb: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the session's ingested sample knowledge base."""
    home = tmp_path / "realhome"
    copy_kb(real_kb["home"], home)
    monkeypatch.setenv("KB_KB__HOME", str(home))
    return home
