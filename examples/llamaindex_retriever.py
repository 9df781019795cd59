"""A kb knowledge base from Python: a LlamaIndex retriever that ranks as `kb ask` does, and a
query engine over it that answers with any LlamaIndex LLM.

    python examples/llamaindex_retriever.py "How long is the refund window?"
"""

from __future__ import annotations

import sys

from llama_index.core.llms import LLM

from core.llamaindex import open_query_engine, open_retriever


def sources(question: str, kb: str | None = None) -> list[tuple[float, str]]:
    """The chunks `kb ask --retrieve-only` would list: (score, path), best first."""
    with open_retriever(kb, top_k=3) as retriever:
        hits = retriever.retrieve(question)  # LlamaIndex NodeWithScore objects
    return [(hit.score or 0.0, hit.node.metadata["path"]) for hit in hits]


def answer(question: str, llm: LLM, kb: str | None = None) -> str:
    """An answer from `llm` (any LlamaIndex LLM) grounded in the same chunks."""
    with open_query_engine(llm, kb, top_k=3) as engine:
        return str(engine.query(question))


if __name__ == "__main__":
    from core.config import load_settings
    from core.llm import make_llm

    question = sys.argv[1]
    for score, path in sources(question):
        print(f"{score:.3f}  {path}")
    # The LLM of kb's [llm] settings; any other works too, e.g. Ollama(model="qwen2.5:7b")
    # from llama-index-llms-ollama.
    llm = make_llm(load_settings().settings.llm)
    if llm is not None:
        print(answer(question, llm))
