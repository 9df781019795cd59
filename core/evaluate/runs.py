"""Saved runs (`kb eval --save NAME`) and the comparison of two of them."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from core.config import Settings, kb_home
from core.errors import ConfigError
from core.results import CaseResult, Comparison, EvalReport, InputProblem


def runs_dir(settings: Settings) -> Path:
    """Where `--save NAME` keeps runs."""
    return kb_home(settings.kb.home) / "evals"


def save_run(report: EvalReport, settings: Settings) -> Path:
    """Write the run as JSON under its name."""
    folder = runs_dir(settings)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{report.name}.json"
    path.touch(mode=0o600)
    path.write_text(json.dumps(asdict(report), ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def load_run(name: str, settings: Settings) -> EvalReport:
    """A saved run (by name, or a path to its JSON file)."""
    path = Path(name) if name.endswith(".json") else runs_dir(settings) / f"{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(
            f"no saved eval run {name!r} ({path})", hint="save one with `kb eval FILE --save NAME`"
        ) from err
    data["problems"] = tuple(InputProblem(**p) for p in data.get("problems", ()))
    data["unknown_sources"] = tuple(data.get("unknown_sources", ()))
    data["cases"] = tuple(
        CaseResult(
            **{
                **c,
                "expected": tuple(c["expected"]),
                "retrieved": tuple(c["retrieved"]),
                "references": tuple(c.get("references", ())),
            }
        )
        for c in data["cases"]
    )
    return EvalReport(**data)


def compare_runs(a: EvalReport, b: EvalReport) -> Comparison:
    """Per-metric values of both runs, and per-question changes of nDCG (or answer F1)."""
    names = sorted(set(a.metrics) | set(b.metrics))
    key = f"ndcg@{b.k}" if f"ndcg@{b.k}" in b.metrics else "f1"
    before = {c.id: c for c in a.cases}
    better, worse = [], []
    for case in b.cases:
        old = before.get(case.id)
        if old is None or key not in case.metrics or key not in old.metrics:
            continue
        change = case.metrics[key] - old.metrics[key]
        if change > 1e-9:
            better.append((case.id, case.question, change))
        elif change < -1e-9:
            worse.append((case.id, case.question, change))
    return Comparison(
        a.name,
        b.name,
        {n: (a.metrics.get(n), b.metrics.get(n)) for n in names},
        tuple(sorted(better, key=lambda x: -x[2])),
        tuple(sorted(worse, key=lambda x: x[2])),
        key,
    )
