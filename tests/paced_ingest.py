"""`kb ingest` as a child process with one seam: each file's commit is followed by a pause, so a
test can act while the ingest runs whatever the machine's (or the embedder's) speed.

Everything else is kb's real path, the bundled embedder included (a reader must find the same
embedder the knowledge base is built with). `PACED_INGEST_SECONDS` is the pause after each file
(default 1). The pause holds no lock: readers are served during it, as between any two files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from cli.app import main
from stores.contract import ChunkPoint
from stores.shard import EdgeShardStore

_replace = EdgeShardStore.replace_document


def _paced_replace(
    self: EdgeShardStore, doc_id: str, chunks: Sequence[ChunkPoint], record: dict[str, Any]
) -> None:
    _replace(self, doc_id, chunks, record)
    time.sleep(float(os.environ.get("PACED_INGEST_SECONDS", "1")))


EdgeShardStore.replace_document = _paced_replace  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
