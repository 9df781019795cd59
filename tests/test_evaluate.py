"""`kb eval`: metrics on hand-computed cases and against pytrec_eval, question-set parsing, the BEIR
path on a tiny folder made here, saved runs, comparisons, --fail-under, and LLM-written questions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import ExitCode, app
from core.evaluate.cases import load_cases, resolve_sources
from core.evaluate.metrics import (
    citation_validity,
    contains_answer,
    query_metrics,
    retrieval_metrics,
    token_f1,
)
from core.results import Source
from tests.openai_server import FakeOpenAI

REPO = Path(__file__).resolve().parents[1]


# -------------------------------------------------------------------------------- metrics


def test_retrieval_metrics_by_hand() -> None:
    qrels = {"q1": {"a": 1, "b": 1}, "q2": {"c": 1}, "q3": {"d": 1}}
    ranking = {"q1": ["x", "a", "y", "b"], "q2": ["c"], "q3": []}
    per = query_metrics(qrels, ranking, k=10)
    ideal = 1 + 1 / math.log2(3)
    assert per["q1"]["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)
    assert per["q1"]["recall@10"] == 1.0
    assert per["q1"]["mrr@10"] == 0.5
    assert per["q1"]["hit@10"] == 1.0
    assert per["q2"] == {"ndcg@10": 1.0, "recall@10": 1.0, "mrr@10": 1.0, "hit@10": 1.0}
    assert per["q3"] == {"ndcg@10": 0.0, "recall@10": 0.0, "mrr@10": 0.0, "hit@10": 0.0}
    mean = retrieval_metrics(qrels, ranking, k=10)
    assert mean["hit@10"] == pytest.approx(2 / 3)  # the empty result counts, as 0


def test_cutoff_applies_and_graded_gain_is_linear() -> None:
    import pytrec_eval

    qrels = {"q": {"a": 2, "b": 1}}
    ranking = {"q": ["b", "z", "a"]}
    ours = query_metrics(qrels, ranking, k=2)["q"]
    assert ours["recall@2"] == 0.5  # "a" is third: outside the cutoff
    theirs = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.2"}).evaluate(
        {"q": {"b": 3.0, "z": 2.0, "a": 1.0}}
    )["q"]["ndcg_cut_2"]
    assert ours["ndcg@2"] == pytest.approx(theirs)
    assert ours["ndcg@2"] == pytest.approx(1 / (2 + 1 / math.log2(3)))  # linear gain: 2, not 2^2-1


def test_answer_matching_ignores_case_width_and_punctuation() -> None:
    assert contains_answer("The window is ３０ Ｄａｙｓ.", ["30 days"])
    assert contains_answer("保留 60 天。", ["60天"])  # spacing around Chinese does not matter
    assert contains_answer("保留60天。", ["60 天"])
    assert not contains_answer("保留 60 天。", ["600天"])
    assert contains_answer("Luke Kuechly led", ["Luke Kuechly."])
    assert not contains_answer("anything", [""])


def test_token_f1_is_character_level_for_chinese() -> None:
    assert token_f1("退款期限是三十天", ["三十天"]) == pytest.approx(2 * (3 / 8) / (3 / 8 + 1))
    assert token_f1("the window is 30 days", ["30 days"]) == pytest.approx(2 * 0.4 / 1.4)
    assert token_f1("保留60天", ["60 天"]) == pytest.approx(2 * 0.5 / 1.5)  # 保 留 60 天 vs 60 天
    assert token_f1("nothing", ["30 days"]) == 0.0


def test_citation_validity_checks_the_claim_before_each_citation() -> None:
    sources = [
        Source(1, "a.md", "/a.md", 1.0, "Refunds are accepted within 30 days of purchase.", "1"),
        Source(2, "b.md", "/b.md", 1.0, "The server listens on port 8743.", "2"),
    ]
    assert citation_validity("Refunds are accepted within 30 days. [1]", sources) == 1.0
    assert citation_validity("Refunds are accepted within 30 days [2].", sources) == 0.0
    assert citation_validity("Port 8743 [2]. Refunds within 30 days [1][7].", sources) == 2 / 3
    assert citation_validity("No citations here.", sources) is None


# -------------------------------------------------------------------------------- inputs


def test_malformed_lines_are_reported_by_number_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text(
        '{"question": "One?", "answer": "1", "sources": "a.md"}\n'
        "not json\n"
        "\n"
        '{"answers": ["no question"]}\n'
        '{"question": "Two?", "sources": [3]}\n'
        '{"id": "x", "question": "Three?"}\n'
        '{"id": "x", "question": "Again?"}\n',
        encoding="utf-8",
    )
    cases, problems = load_cases(path)
    assert [c.question for c in cases] == ["One?", "Three?"]
    assert cases[0].answers == ("1",)
    assert cases[0].sources == ("a.md",)
    assert [(p.line, p.reason.split(" (")[0]) for p in problems] == [
        (2, "not JSON"),
        (4, 'no "question" text'),
        (5, '"answers" and "sources" must be strings'),
        (7, "duplicate id 'x'"),
    ]


def test_sources_resolve_by_path_name_stem_or_absolute_path() -> None:
    from core.evaluate.cases import EvalCase

    records = [
        {"path": "docs/a.md", "abs_path": "/r/docs/a.md"},
        {"path": "b.txt", "abs_path": "/r/b.txt"},
    ]
    cases = [
        EvalCase("1", "q", sources=("docs/a.md", "b")),
        EvalCase("2", "q", sources=("/r/b.txt", "a.md", "missing.md")),
    ]
    qrels, unknown = resolve_sources(cases, records)
    assert qrels == {"1": {"docs/a.md": 1, "b.txt": 1}, "2": {"b.txt": 1, "docs/a.md": 1}}
    assert unknown == ["missing.md"]


# -------------------------------------------------------------------------------- the command


def test_eval_on_the_sample_questions(runner: CliRunner, kb_copy: Path) -> None:
    questions = REPO / "examples" / "questions.jsonl"
    result = runner.invoke(app, ["eval", str(questions), "--json", "--bad-cases", "2"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["questions"] == 12
    assert report["metrics"]["hit@10"] >= 0.9
    assert report["metrics"]["contains"] >= 0.6  # 8 of 12; the misses cross languages
    assert (
        report["metrics"]["citation_validity"] == 1.0
    )  # extractive sentences come from their source
    assert set(report["latency"]) == {"retrieve_s", "answer_s"}
    assert len(report["bad_cases"]) == 2
    assert report["unknown_sources"] == []


def test_fail_under_exits_7_and_bad_metric_is_a_usage_error(
    runner: CliRunner, kb_copy: Path
) -> None:
    questions = str(REPO / "examples" / "questions.jsonl")
    failed = runner.invoke(
        app, ["eval", questions, "--retrieval-only", "--fail-under", "hit@10=1.01"]
    )
    assert failed.exit_code == ExitCode.BELOW_THRESHOLD
    assert "below --fail-under: hit@10" in failed.stderr
    passed = runner.invoke(
        app, ["eval", questions, "--retrieval-only", "--fail-under", "hit@10=0.5"]
    )
    assert passed.exit_code == 0, passed.stderr
    unknown = runner.invoke(app, ["eval", questions, "--retrieval-only", "--fail-under", "f2=0.5"])
    assert unknown.exit_code == ExitCode.USAGE
    assert "no metric 'f2'" in unknown.stderr
    bad = runner.invoke(app, ["eval", questions, "--fail-under", "ndcg"])
    assert bad.exit_code == ExitCode.USAGE


def test_saved_runs_compare(runner: CliRunner, kb_copy: Path) -> None:
    questions = str(REPO / "examples" / "questions.jsonl")
    assert runner.invoke(app, ["eval", questions, "--save", "hybrid"]).exit_code == 0
    result = runner.invoke(app, ["eval", questions, "--mode", "sparse", "--save", "sparse"])
    assert result.exit_code == 0, result.stderr
    compared = runner.invoke(app, ["eval", "compare", "hybrid", "sparse", "--json"])
    assert compared.exit_code == 0, compared.stderr
    payload = json.loads(compared.stdout)
    assert payload["key"] == "ndcg@10"
    assert set(payload["metrics"]) >= {"ndcg@10", "contains"}
    missing = runner.invoke(app, ["eval", "compare", "hybrid", "nope"])
    assert missing.exit_code == ExitCode.USAGE


def _beir_folder(root: Path) -> Path:
    folder = root / "tiny-beir"
    (folder / "qrels").mkdir(parents=True)
    docs = [
        ("d1", "Refunds", "Refunds are accepted within 30 days of purchase."),
        ("d2", "Ports", "The server listens on port 8743 unless configured otherwise."),
        ("d3", "Trash", "Deleted notes stay in the trash for 60 days."),
    ]
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in docs)
    )
    (folder / "queries.jsonl").write_text(
        '{"_id": "q1", "text": "How long are refunds accepted?"}\n'
        '{"_id": "q2", "text": "Which port does the server listen on?"}\n'
        '{"_id": "q3", "text": "not judged"}\n'
    )
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    (folder / "qa.jsonl").write_text(
        '{"id": "q2", "question": "Which port?", "answers": ["8743"]}\n'
    )
    return folder


def test_beir_folder_is_ingested_once_and_scored(runner: CliRunner, tmp_path: Path) -> None:
    folder = _beir_folder(tmp_path)
    first = runner.invoke(app, ["eval", "--beir", str(folder), "--json"])
    assert first.exit_code == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["kb"] == "beir-tiny-beir"
    assert report["questions"] == 2  # only judged queries
    assert report["metrics"]["hit@10"] == 1.0
    assert report["metrics"]["ndcg@10"] == 1.0
    assert report["metrics"]["contains"] == 1.0  # q2 has a reference answer
    assert "indexed 3 documents" in first.stderr
    again = runner.invoke(app, ["eval", "--beir", str(folder), "--json", "--retrieval-only"])
    assert again.exit_code == 0, again.stderr
    assert "indexed" not in again.stderr  # the knowledge base was reused
    assert "contains" not in json.loads(again.stdout)["metrics"]


def test_compare_and_generate_are_sub_commands_with_their_own_help(runner: CliRunner) -> None:
    compare = runner.invoke(app, ["eval", "compare", "--help"])
    assert compare.exit_code == 0, compare.stderr
    assert compare.stdout.startswith("Usage: kb eval compare [OPTIONS]")
    assert "RUN_A" in compare.stdout
    assert "RUN_B" in compare.stdout
    assert "Example: kb eval compare" in compare.stdout
    assert "--json" in compare.stdout
    assert "--beir" not in compare.stdout
    assert "--count" not in compare.stdout
    generate = runner.invoke(app, ["eval", "generate", "--help"])
    assert generate.exit_code == 0, generate.stderr
    assert generate.stdout.startswith("Usage: kb eval generate [OPTIONS]")
    assert "--count" in generate.stdout
    assert "--output" in generate.stdout
    assert "Example: kb eval generate" in generate.stdout
    assert "--beir" not in generate.stdout
    assert "--fail-under" not in generate.stdout


def test_eval_help_is_the_question_set_command_and_names_the_sub_commands(
    runner: CliRunner,
) -> None:
    for args in (["eval", "--help"], ["eval", "qa.jsonl", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.stderr
        assert result.stdout.startswith("Usage: kb eval [OPTIONS] [QUESTIONS.jsonl]")
        assert "--beir" in result.stdout
        assert "--fail-under" in result.stdout
        assert "--count" not in result.stdout
    commands = runner.invoke(app, ["eval", "--help"]).stdout.split("Commands:")[1]
    assert "compare" in commands
    assert "generate" in commands


def test_usage_errors(runner: CliRunner, tmp_path: Path) -> None:
    assert runner.invoke(app, ["eval"]).exit_code == ExitCode.USAGE
    assert runner.invoke(app, ["eval", "compare", "a"]).exit_code == ExitCode.USAGE
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert runner.invoke(app, ["eval", str(empty)]).exit_code == ExitCode.USAGE
    not_beir = runner.invoke(app, ["eval", "--beir", str(tmp_path)])
    assert not_beir.exit_code == ExitCode.USAGE
    assert "not a BEIR folder" in not_beir.stderr


@pytest.fixture
def llm(kb_copy: Path, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    fake = FakeOpenAI().start()
    monkeypatch.setenv("KB_LLM__PROVIDER", "openai")
    monkeypatch.setenv("KB_LLM__BASE_URL", fake.base_url)
    monkeypatch.setenv("KB_LLM__MAX_RETRIES", "0")
    yield fake  # type: ignore[misc]
    fake.stop()


def test_generate_writes_questions_with_their_source(
    runner: CliRunner, llm: FakeOpenAI, tmp_path: Path
) -> None:
    for _ in range(3):
        llm.reply("1. What does this passage describe?\n")
    target = tmp_path / "generated.jsonl"
    result = runner.invoke(app, ["eval", "generate", "--count", "3", "-o", str(target)])
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == 3
    assert rows[0]["question"] == "What does this passage describe?"
    assert rows[0]["sources"][0]
    prompt = llm.requests[0]["body"]["messages"]
    assert "<passage>" in prompt[1]["content"]


def test_judge_scores_faithfulness_and_relevancy(
    runner: CliRunner, llm: FakeOpenAI, tmp_path: Path
) -> None:
    questions = tmp_path / "one.jsonl"
    questions.write_text('{"question": "How long is the refund window?", "answer": "30 days"}\n')
    llm.reply("Within 30 days [1].").reply("4").reply("5")
    result = runner.invoke(app, ["eval", str(questions), "--judge", "--json"])
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["faithfulness"] == 0.75
    assert metrics["relevancy"] == 1.0
    judge_prompt = llm.requests[1]["body"]["messages"]
    assert "supported by the sources" in judge_prompt[0]["content"]
    assert "<answer>Within 30 days [1].</answer>" in judge_prompt[1]["content"]
