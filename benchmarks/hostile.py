"""Benchmark `kb ingest` on huge single-line files: wall time, chunks/s and peak memory.

Writes, into a temporary folder, one file per ``--kind`` of ``--mb`` megabytes (default 100), each
a single line with no newline at all:

* ``en``: English-like words, a sentence end every dozen words or so (one line, many sentences);
* ``zh``: Chinese characters with no punctuation and no spaces (nothing to cut at: the worst case
  for the sentence splitter and the token counter).

Each file is then ingested by itself, in a new process, into a fresh knowledge base through the
real ingest path (``core.ingest.run_ingest``: scan, plan, read, decode, chunk, sparse vectors, store)
with ``[ingest] max_file_mb`` raised above the file's size. The embedder is a stand-in: it counts
tokens with the default model's own tokenizer (so chunks have the sizes a default ingest makes)
but returns a vector derived from a hash of the text, with the default model's dimension (the
real model would need hours for 100 MB). Measured per file: wall seconds of the ingest, chunks
written, chunks/s, and the peak resident memory of that process (``ru_maxrss``), with the peak
reached in each phase from a thread sampling ``/proc/self/statm``. Phases are the ones ingest
last announced through its progress callback: ``read`` covers reading, decoding, chunking and
building the chunks; ``embed`` covers embedding and also the store write of the file, which is
announced (``write``) only once it is done.

Before that, the plain ``kb ingest FILE --json`` command runs once on the first file with default
settings, to show that a file above ``max_file_mb`` (50 by default) is skipped with one line.

Run from the repository root (about 10 minutes on 2 cores for both 100 MB files)::

    python benchmarks/hostile.py                    # en and zh, 100 MB each
    python benchmarks/hostile.py --kind en --mb 20  # a quick check

Prints a table and, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KINDS = ("en", "zh")
TARGET_PEAK_MIB = 1536
BLOCK_CHARS = 1 << 20

# fmt: off
WORDS = (
    "the", "service", "rotates", "every", "token", "after", "ninety", "days", "and", "writes",
    "a", "short", "audit", "note", "to", "log", "while", "backup", "runs", "at", "night", "so",
    "operators", "can", "restore", "any", "folder", "from", "last", "snapshot", "without",
    "stopping", "cluster", "or", "asking", "vendor", "for", "new", "licence", "key",
)
# fmt: on
HANZI = (
    "退款窗口是三十天部署需要至少两内存请提前准备服务器数据库备份每天凌晨执行日志保留九十天"
    "管理员可以在控制台中查看审计记录并恢复任意文件夹的最近快照无需停止集群或联系供应商"
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- data


def write_file(path: Path, kind: str, mb: float) -> int:
    """A single line of `mb` megabytes of UTF-8 text of `kind`; returns its size in bytes."""
    rng = random.Random(f"{kind}-{mb}")
    target = int(mb * 1024 * 1024)
    written = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        while written < target:
            if kind == "en":
                words = rng.choices(WORDS, k=BLOCK_CHARS // 6)
                for i in range(0, len(words), rng.randint(8, 16)):
                    words[i] = words[i] + "."  # sentence ends, all on one line
                block = " ".join(words) + " "
            else:
                block = "".join(rng.choices(HANZI, k=BLOCK_CHARS // 3))
            data = block.encode("utf-8")[: target - written]
            text = data.decode("utf-8", errors="ignore")
            out.write(text)
            written += len(text.encode("utf-8"))
            if not text:
                break
    return written


# ---------------------------------------------------------------------------- child process


def child(path: Path, home: Path) -> None:
    """Ingest `path` into a fresh knowledge base in `home`; print one JSON line of figures."""
    from core.config import load_settings
    from core.embedders import SPECS
    from core.embedders.base import BundledEmbedding
    from core.ingest import run_ingest
    from core.results import IngestProgress

    class StandInEmbedding(BundledEmbedding):
        """e5's token counts, hashed vectors of e5's size: the chunker and store at full scale."""

        @property
        def fingerprint(self) -> str:
            return "benchmark-stand-in:hashed-stand-in"

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._get_text_embeddings([query])[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            import numpy as np

            rows = []
            for text in texts:
                seed = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8)
                vector = np.random.default_rng(int(seed.hexdigest(), 16)).standard_normal(
                    SPECS["local"].dim
                )
                rows.append((vector / np.linalg.norm(vector)).tolist())  # as e5's rows arrive
            return rows

    size_mb = path.stat().st_size / 1024 / 1024
    (home / "config.toml").write_text("", encoding="utf-8")
    settings = load_settings(
        home / "config.toml",
        environ={},
        overrides={
            "kb": {"home": str(home)},
            "embedding": {"cache": False},
            "ingest": {"max_file_mb": size_mb + 1},
        },
        dotenv_path=home / "no.env",
    ).settings
    sampler = RssSampler()
    sampler.start()

    def on_progress(tick: IngestProgress) -> None:
        sampler.phase = tick.phase

    began = time.perf_counter()
    report = run_ingest(settings, [path], on_progress=on_progress, embedder=StandInEmbedding())
    wall = time.perf_counter() - began
    sampler.stop()
    print(
        json.dumps(
            {
                "file_mb": size_mb,
                "wall_s": wall,
                "embed_s": report.embed_seconds,
                "chunks": report.chunks_written,
                "chunks_embedded": report.chunks_embedded,
                "problems": [p.reason for p in report.problems],
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "peak_by_phase_mib": sampler.peaks,
            }
        )
    )


class RssSampler(threading.Thread):
    """The largest resident set seen in each ingest phase, sampled every 20 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.phase = "scan"
        self.peaks: dict[str, float] = {}
        self._done = threading.Event()
        self._page_mib = os.sysconf("SC_PAGE_SIZE") / 1024 / 1024

    def run(self) -> None:
        while not self._done.wait(0.02):
            with open("/proc/self/statm", encoding="ascii") as statm:
                rss = int(statm.read().split()[1]) * self._page_mib
            self.peaks[self.phase] = round(max(self.peaks.get(self.phase, 0.0), rss), 1)

    def stop(self) -> None:
        self._done.set()
        self.join()


# ---------------------------------------------------------------------------- parent


def ingest_in_child(path: Path, home: Path) -> dict[str, Any]:
    """Run `child` in a new process; its figures, plus its ru_maxrss as the parent sees it."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", str(path), str(home)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(home),
    )
    assert process.stdout is not None
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"the ingest process failed ({process.returncode})")
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    figures["child_maxrss_mib"] = usage.ru_maxrss / 1024
    return figures


def default_skip(path: Path, home: Path) -> dict[str, Any]:
    """`kb ingest FILE --json` with default settings: the file is over max_file_mb.

    A file smaller than the default limit (a quick run with a small --mb) gets a limit of half
    its size instead, so it is skipped all the same and nothing is embedded by the real model.
    """
    from core.config import IngestSettings

    env = clean_env(home)
    size_mb = path.stat().st_size / 1024 / 1024
    if size_mb <= IngestSettings().max_file_mb:
        env["KB_INGEST__MAX_FILE_MB"] = f"{size_mb / 2:.3f}"
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cli", "ingest", str(path), "--json"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(done.stdout)
    return {
        "exit_code": done.returncode,
        "seconds": time.perf_counter() - began,
        "stderr": done.stderr.strip(),
        "problems": report["problems"],
        "files_total": report["files_total"],
    }


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
    env["KB_KB__HOME"] = str(home)
    env["PYTHONPATH"] = str(REPO)
    return env


def print_table(rows: Sequence[tuple[str, str, str, str]]) -> None:
    header = ("figure", "value", "target", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--kind", choices=KINDS, action="append", help="en, zh (default: both)")
    p.add_argument("--mb", type=float, default=100.0, help="size of each file in MB")
    p.add_argument("--keep", type=Path, default=None, help="write the files here (kept)")
    p.add_argument("--child", nargs=2, type=Path, metavar=("FILE", "HOME"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    kinds = args.kind or list(KINDS)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="kb-bench-hostile-") as scratch_name:
        scratch = Path(scratch_name)
        folder = args.keep.resolve() if args.keep else scratch / "files"
        folder.mkdir(parents=True, exist_ok=True)
        files: dict[str, Path] = {}
        for kind in kinds:
            files[kind] = folder / f"one-line-{kind}.txt"
            began = time.perf_counter()
            size = write_file(files[kind], kind, args.mb)
            seconds = time.perf_counter() - began
            log(f"wrote {files[kind].name}: {size / 1024 / 1024:.1f} MB in {seconds:.1f} s")
        skip_home = scratch / "skip-home"
        skip_home.mkdir()
        skipped = default_skip(files[kinds[0]], skip_home)
        log(f"default settings: {skipped['stderr']}")
        for kind in kinds:
            home = scratch / f"home-{kind}"
            home.mkdir()
            log(f"ingesting {files[kind].name}...")
            results[kind] = ingest_in_child(files[kind], home)
            log(f"  {results[kind]['chunks']} chunks in {results[kind]['wall_s']:.1f} s")
    rows: list[tuple[str, str, str, str]] = [
        (
            f"default max_file_mb: {files[kinds[0]].name}",
            f"skipped, exit {skipped['exit_code']}, {skipped['stderr'].count(chr(10)) + 1} line",
            "skipped",
            "ok" if skipped["problems"] and skipped["files_total"] == 0 else "MISS",
        )
    ]
    for kind, r in results.items():
        peak = max(r["peak_rss_mib"], r["child_maxrss_mib"])
        phases = ", ".join(f"{k} {v:.0f}" for k, v in r["peak_by_phase_mib"].items())
        rows += [
            (f"{kind}: file", f"{r['file_mb']:.1f} MB, one line", "", ""),
            (f"{kind}: chunks written", f"{r['chunks']} ({r['chunks_embedded']} embedded)", "", ""),
            (f"{kind}: wall (embedder {r['embed_s']:.1f} s)", f"{r['wall_s']:.1f} s", "", ""),
            (f"{kind}: chunks/s", f"{r['chunks'] / r['wall_s']:.0f}", "", ""),
            (f"{kind}: MB/s", f"{r['file_mb'] / r['wall_s']:.2f}", "", ""),
            (
                f"{kind}: peak memory (ru_maxrss)",
                f"{peak:.0f} MiB",
                f"< {TARGET_PEAK_MIB} MiB",
                "ok" if peak < TARGET_PEAK_MIB else "MISS",
            ),
            (f"{kind}: peak by phase (MiB)", phases, "", ""),
        ]
    print_table(rows)
    print(json.dumps({"mb": args.mb, "default_skip": skipped, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
