"""`kb eval`: measuring retrieval and answers on question sets.

By job: `cases` reads question sets (JSONL, BEIR folders), `metrics` scores, `run` runs a set
against the knowledge base, `runs` saves and compares runs, `generate` writes questions with the
LLM. The results the CLI renders (EvalReport, CaseResult, Comparison, InputProblem) live in
core.results.
"""

from __future__ import annotations

from core.evaluate.run import run_eval

__all__ = ["run_eval"]
