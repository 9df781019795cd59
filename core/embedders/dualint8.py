"""`local-dual-int8`: `local-dual` with its e5 half on `local-int8`'s runtime (ONNX Runtime int8).

The same layout as `local-dual` (e5 in the first 384 dimensions, USE after, each of unit length),
but the e5 half is `local-int8`'s vectors (cosine ~0.997 to `local`'s), so it is its own embedder
with its own fingerprint, never mixed with `local-dual`'s or `local`'s. About half the e5 cost of
`local-dual` at ingest; like `local-int8`, no fallback where ONNX Runtime cannot run.
An encoder (see `core.embedders.Encoder`): no LlamaIndex here.
"""

from __future__ import annotations

from core.embedders import e5int8
from core.embedders.dual import Pair

PAIR = Pair(e5int8)
configure = PAIR.configure
runtime = PAIR.runtime
query = PAIR.query
query_one_language = PAIR.query_one_language
passages = PAIR.passages
count_tokens = PAIR.count_tokens
