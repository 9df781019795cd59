"""`kb ingest` as a child process with the hash embedder, for the crash-safety test.

Everything but the embedder is kb's real path (CLI, chunking, cache, Qdrant Edge on disk): the
bundled model would make each of the test's many runs take minutes, and vectors do not matter here.
`CRASH_TEST_EMBED_DELAY` (seconds per batch) spreads a run out so kills land in every phase;
`CRASH_TEST_TRACE` names a file that gets one byte per store write, so the test can kill the process
after a chosen number of writes whatever the machine's speed. Files of more than three chunks take
the large-file path (staged windows), so kills land there too; `CRASH_TEST_INDEX_TRACE` marks when
the store indexes (the tests set `[store] index_after` low, so small folders get indexed too).
"""

from __future__ import annotations

import os
import time
from typing import Any

import core.ingest.pipeline
import core.providers
from cli.app import main
from core.config import EmbeddingSettings
from stores.shard import EdgeShardStore
from tests.fakes import HashEmbedding


class SlowHashEmbedding(HashEmbedding):
    """The hash embedder at the bundled model's size, optionally slowed down per batch."""

    dim: int = 384

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        time.sleep(float(os.environ.get("CRASH_TEST_EMBED_DELAY", "0")))
        return super()._get_text_embeddings(texts)


def _make_embedder(cfg: EmbeddingSettings) -> HashEmbedding:
    return SlowHashEmbedding(embed_batch_size=cfg.batch_size)


_store_write = EdgeShardStore._write


def _traced_write(self: EdgeShardStore, operation: Any) -> None:
    _store_write(self, operation)
    trace = os.environ.get("CRASH_TEST_TRACE")
    if trace:
        with open(trace, "ab", buffering=0) as handle:
            handle.write(b".")


_store_optimize = EdgeShardStore.optimize


def _traced_optimize(self: EdgeShardStore) -> bool:
    """`CRASH_TEST_INDEX_TRACE` gets "(" when the store starts indexing and ")" when it is done."""
    trace = os.environ.get("CRASH_TEST_INDEX_TRACE")
    if trace:
        with open(trace, "ab", buffering=0) as handle:
            handle.write(b"(")
    done = _store_optimize(self)
    if trace:
        with open(trace, "ab", buffering=0) as handle:
            handle.write(b")")
    return done


core.providers.make_embedder = _make_embedder  # the engine imports it at first use
core.ingest.pipeline.LARGE_FILE_CHUNKS = 3
core.ingest.pipeline.LARGE_WINDOW = 2
EdgeShardStore._write = _traced_write  # type: ignore[method-assign]
EdgeShardStore.optimize = _traced_optimize  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
