"""kb from Python through LlamaIndex: the README's example (examples/llamaindex_retriever.py) run on
the sample knowledge base with the real bundled embedder. Its retriever must rank exactly as
`kb ask --retrieve-only --json` does, and its query engine must answer from those chunks with the
LLM it was given (a scripted one here; the global Settings are tripwires, see conftest)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.app import app
from core.llamaindex import node_source, open_retriever
from tests.fakes import ScriptedLLM

EXAMPLE = Path(__file__).parents[1] / "examples" / "llamaindex_retriever.py"
QUESTIONS = ["How long is the refund window?", "生产环境需要多少内存？"]


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llamaindex_retriever", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _kb_ask(runner: CliRunner, question: str, *flags: str) -> dict[str, Any]:
    result = runner.invoke(app, ["ask", question, "--retrieve-only", "--json", *flags])
    assert result.exit_code == 0, result.stderr
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


@pytest.mark.parametrize("question", QUESTIONS)
def test_the_retriever_ranks_as_kb_ask_does(
    runner: CliRunner, kb_copy: Path, question: str
) -> None:
    expected = _kb_ask(runner, question, "--top-k", "3")["sources"]
    assert len(expected) == 3

    assert _example().sources(question) == [(s["score"], s["path"]) for s in expected]
    with open_retriever(top_k=3) as retriever:
        nodes = retriever.retrieve(question)
    assert json.loads(json.dumps([asdict(node_source(n)) for n in nodes])) == expected


def test_retriever_options_are_kb_asks_flags(runner: CliRunner, kb_copy: Path) -> None:
    question = QUESTIONS[0]
    expected = _kb_ask(runner, question, "--mode", "dense", "--top-k", "2", "--context", "1")
    with open_retriever(mode="dense", top_k=2, context=1) as retriever:
        nodes = retriever.retrieve(question)
    assert json.loads(json.dumps([asdict(node_source(n)) for n in nodes])) == expected["sources"]


def test_the_query_engine_answers_with_the_given_llm_from_those_chunks(
    runner: CliRunner, kb_copy: Path
) -> None:
    question = QUESTIONS[0]
    expected = _kb_ask(runner, question, "--top-k", "3")["sources"]
    llm = ScriptedLLM().enqueue("Refunds are accepted within 30 days.")

    assert _example().answer(question, llm) == "Refunds are accepted within 30 days."
    assert len(llm.received) == 1
    prompt = llm.last_prompt
    assert question in prompt
    for source in expected:
        assert " ".join(source["text"].split()[:12]) in " ".join(prompt.split())
        assert f"path: {source['path']}" in prompt
    assert "chunk_id" not in prompt  # ids and scores are not shown to the LLM
