"""Living with kb: user-level settings, a knowledge base that remembers how it was built, `--version`,
and the small things found in use (missing optional package, --fail-under, worst questions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import ExitCode, app
from core.config import USER_DIR_ENV, effective_items, load_settings
from core.errors import ConfigError
from core.evaluate.run import bad_cases
from core.results import CaseResult, EvalReport

Docs = Callable[..., Path]
KB = [sys.executable, "-m", "cli"]
TINY = {"a.md": "# Refunds\nThe refund window is 30 days from delivery.\n"}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _user_dir() -> Path:
    return Path(os.environ[USER_DIR_ENV])


def _origins(stdout: str) -> dict[str, tuple[str, str]]:
    return {s["key"]: (s["value"], s["from"]) for s in json.loads(stdout)["settings"]}


# -------------------------------------------------------------------------- user-level settings


def test_user_settings_sit_below_the_projects(tmp_path: Path) -> None:
    user = tmp_path / "user"
    _write(user / "config.toml", "[retrieval]\ntop_k = 3\nmode = 'dense'\ncontext = 1\n")
    _write(
        user / ".env",
        "KB_RETRIEVAL__TOP_K=4\nKB_LLM__PROVIDER=deepseek\nDEEPSEEK_API_KEY=sk-user-0123456789\n",
    )
    project = _write(tmp_path / "config.toml", "[retrieval]\ntop_k = 6\n")
    dotenv = _write(tmp_path / ".env", "KB_RETRIEVAL__MODE=sparse\n")
    loaded = load_settings(project, environ={}, dotenv_path=dotenv, user_dir=user)
    s = loaded.settings
    assert s.retrieval.top_k == 6  # the project's config.toml beats the user's .env and config.toml
    assert s.retrieval.mode == "sparse"  # the project's .env beats the user's config.toml
    assert s.retrieval.context == 1  # set only by the user: it follows them into every folder
    assert s.llm.provider == "deepseek"
    assert s.llm.api_key is not None
    assert s.llm.api_key.get_secret_value() == "sk-user-0123456789"
    origins = {key: origin for key, _, origin in effective_items(loaded)}
    assert origins["retrieval.context"] == f"user config file {user / 'config.toml'}"
    assert origins["llm.provider"] == f"user .env ({user / '.env'})"
    assert origins["llm.api_key"] == "user .env (DEEPSEEK_API_KEY)"
    assert origins["retrieval.top_k"] == f"config file {project}"
    assert [(f.role, f.found) for f in loaded.files] == [
        ("user config", True),
        ("user .env", True),
        ("config", True),
        (".env", True),
    ]


def test_environment_beats_the_user_files(tmp_path: Path) -> None:
    user = tmp_path / "user"
    _write(user / ".env", "KB_RETRIEVAL__TOP_K=4\n")
    loaded = load_settings(environ={"KB_RETRIEVAL__TOP_K": "9"}, user_dir=user)
    assert loaded.settings.retrieval.top_k == 9


def test_kb_config_home_names_the_user_folder_and_is_no_setting(tmp_path: Path) -> None:
    user = tmp_path / "elsewhere"
    _write(user / "config.toml", "[kb]\nname = 'notes'\n")
    loaded = load_settings(environ={USER_DIR_ENV: str(user)})
    assert loaded.settings.kb.name == "notes"
    assert loaded.files[0].path == user / "config.toml"


def test_a_secret_in_the_user_config_toml_is_refused(tmp_path: Path) -> None:
    user = tmp_path / "user"
    _write(user / "config.toml", "[llm]\napi_key = 'sk-oops'\n")
    with pytest.raises(ConfigError, match=r"llm.api_key must not be written in .*user") as caught:
        load_settings(environ={}, user_dir=user)
    assert caught.value.hint is not None
    assert ".env" in caught.value.hint


def test_tests_never_read_the_developers_own_user_folder(tmp_path: Path) -> None:
    # The isolation fixture moves both the variable and the platform's fallback under tmp.
    for environ in ({}, None):
        files = load_settings(environ=environ).files
        assert files[0].path.is_relative_to(tmp_path), files[0].path
        assert files[1].path.is_relative_to(tmp_path), files[1].path


def test_kb_config_lists_every_file_it_considered(runner: CliRunner) -> None:
    _write(_user_dir() / "config.toml", "[retrieval]\ntop_k = 7\n")
    result = runner.invoke(app, ["config", "--json"])
    assert result.exit_code == 0, result.stderr
    files = json.loads(result.stdout)["files"]
    assert [(f["role"], f["found"]) for f in files] == [
        ("user config", True),
        ("user .env", False),
        ("config", False),
        (".env", False),
    ]
    assert files[0]["path"] == str(_user_dir() / "config.toml")
    assert _origins(result.stdout)["retrieval.top_k"] == (
        "7",
        f"user config file {_user_dir() / 'config.toml'}",
    )
    plain = runner.invoke(app, ["config"])
    assert f"# user config: {_user_dir() / 'config.toml'} (found)" in plain.stdout
    assert "# user .env: " in plain.stdout


def test_kb_config_shows_the_preset_values_used(runner: CliRunner) -> None:
    result = runner.invoke(app, ["config", "--json"], env={"KB_LLM__PROVIDER": "ollama"})
    assert result.exit_code == 0, result.stderr
    origins = _origins(result.stdout)
    assert origins["llm.base_url"] == ("http://localhost:11434/v1", "preset ollama")
    assert origins["llm.model"] == ("qwen2.5:7b", "preset ollama")
    # a value the user gave is shown as given
    given = runner.invoke(
        app, ["config", "--json"], env={"KB_LLM__PROVIDER": "ollama", "KB_LLM__MODEL": "llama3"}
    )
    assert _origins(given.stdout)["llm.model"] == ("llama3", "environment")


# ------------------------------------------------------- a knowledge base remembers how it was built


def _kb_run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """The real `kb` process, with the isolation's environment plus `env`."""
    return subprocess.run(
        [*KB, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_a_knowledge_base_opens_with_the_embedder_it_was_built_with(
    docs: Docs, runner: CliRunner, tmp_path: Path
) -> None:
    root = docs(TINY)
    # Built with `local` (the default before `local-dual`): it keeps opening with `local`.
    built = _kb_run(["ingest", str(root), "--kb", "e5"], KB_EMBEDDING__PROVIDER="local")
    assert built.returncode == 0, built.stderr
    asked = _kb_run(["ask", "How long is the refund window?", "--kb", "e5", "--json"])
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["sources"][0]["path"] == "a.md"
    assert "30 days" in answer["answer"]

    config = runner.invoke(app, ["config", "--kb", "e5", "--json"])
    assert _origins(config.stdout)["embedding.provider"] == ("local", "knowledge base 'e5'")

    # A config.toml of documented defaults chooses nothing: the knowledge base still opens.
    _write(
        Path("config.toml"), "[embedding]\nprovider = 'local-dual'\n[ingest]\nchunk_size = 384\n"
    )
    plain = runner.invoke(app, ["ask", "refund window", "--kb", "e5", "--retrieve-only"])
    assert plain.exit_code == 0, plain.stderr

    # A setting the user gave that contradicts it is refused, with the hint to rebuild.
    for env, toml in (({"KB_EMBEDDING__PROVIDER": "local-dual"}, None), ({}, "local-use")):
        if toml:
            _write(Path("config.toml"), f"[embedding]\nprovider = '{toml}'\n")
        refused = runner.invoke(
            app, ["ask", "refund window", "--kb", "e5", "--retrieve-only"], env=env
        )
        assert refused.exit_code == ExitCode.USAGE, refused.stderr
        assert "was built with other settings" in refused.stderr
        assert "kb ingest --rebuild" in refused.stderr


def test_chunking_is_remembered_and_a_rebuild_starts_afresh(runner: CliRunner, docs: Docs) -> None:
    root = docs(TINY)
    first = runner.invoke(app, ["ingest", str(root)], env={"KB_INGEST__CHUNK_SIZE": "256"})
    assert first.exit_code == 0, first.stderr
    (root / "b.md").write_text("# Shipping\nParcels ship within two days.\n", encoding="utf-8")
    again = runner.invoke(app, ["ingest", str(root), "--json"])  # no variable: 256 is remembered
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["added"] == ["b.md"]
    config = runner.invoke(app, ["config", "--json"])
    assert _origins(config.stdout)["ingest.chunk_size"] == ("256", "knowledge base 'default'")
    contradicting = runner.invoke(app, ["ingest", str(root)], env={"KB_INGEST__CHUNK_SIZE": "300"})
    assert contradicting.exit_code == ExitCode.USAGE
    assert "chunk_size" in contradicting.stderr
    rebuilt = runner.invoke(app, ["ingest", "--rebuild", str(root)])  # today's settings: 384
    assert rebuilt.exit_code == 0, rebuilt.stderr
    after = runner.invoke(app, ["config", "--json"])
    assert _origins(after.stdout)["ingest.chunk_size"] == ("384", "default")


# -------------------------------------------------------------------------------------- --version


def test_version_is_the_installed_distributions(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"kb {version('kb')}"
    real = _kb_run(["--version"])
    assert real.returncode == 0
    assert real.stdout.strip() == f"kb {version('kb')}"


# ------------------------------------------------------------------------------ small things


def test_a_reranker_without_its_package_is_a_setup_error(runner: CliRunner, kb_copy: Path) -> None:
    try:
        import fastembed  # noqa: F401

        pytest.skip("fastembed is installed: the missing-package error cannot happen")
    except ImportError:
        pass
    result = runner.invoke(
        app,
        ["ask", "refund window", "--retrieve-only"],
        env={"KB_RETRIEVAL__RERANKER": "BAAI/bge-reranker-base"},
    )
    assert result.exit_code == ExitCode.USAGE, result.stderr  # setup (2), not "endpoint down" (3)
    assert "needs the fastembed package" in result.stderr


def test_fail_under_an_unknown_metric_fails_before_the_run(
    runner: CliRunner, tmp_path: Path
) -> None:
    questions = _write(
        tmp_path / "q.jsonl", '{"question": "refund window?", "sources": ["a.md"]}\n'
    )
    # There is no knowledge base: a run would fail with exit 4. The floor is refused first.
    result = runner.invoke(app, ["eval", str(questions), "--fail-under", "foo=0.9"])
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert "no metric 'foo'" in result.stderr
    assert "ndcg@10" in result.stderr  # the hint lists what it can report
    # an answer metric without answers is refused the same way
    no_answers = runner.invoke(
        app, ["eval", str(questions), "--retrieval-only", "--fail-under", "contains=0.5"]
    )
    assert no_answers.exit_code == ExitCode.USAGE
    # a known metric passes the check and reaches the (missing) knowledge base
    known = runner.invoke(app, ["eval", str(questions), "--fail-under", "hit@10=0.5"])
    assert known.exit_code == ExitCode.NO_KNOWLEDGE_BASE, known.stderr


def _case(name: str, **metrics: float) -> CaseResult:
    return CaseResult(name, f"{name}?", ("a.md",), ("a.md",), "", "extractive", metrics, 0.0, 0.0)


def test_worst_questions_leave_out_perfect_ones() -> None:
    cases = (
        _case("perfect", **{"hit@10": 1.0, "ndcg@10": 1.0, "contains": 1.0, "f1": 1.0}),
        _case("miss", **{"hit@10": 0.0, "ndcg@10": 0.0}),
        _case("low-f1", **{"hit@10": 1.0, "ndcg@10": 1.0, "contains": 1.0, "f1": 0.5}),
    )
    report = EvalReport("", "kb", "hybrid", "", 10, 3, {}, {}, (), (), cases)
    assert [c.id for c in bad_cases(report, 5)] == ["miss", "low-f1"]


def test_kb_eval_lists_no_perfect_question_as_worst(
    runner: CliRunner, kb_copy: Path, tmp_path: Path
) -> None:
    questions = _write(
        tmp_path / "q.jsonl",
        json.dumps(
            {
                "question": "How long is the refund window?",
                "sources": ["policies/licensing-and-refunds.docx"],
            }
        )
        + "\n",
    )
    result = runner.invoke(app, ["eval", str(questions), "--retrieval-only"])
    assert result.exit_code == 0, result.stderr
    assert "hit@10" in result.stdout
    assert "worst" not in result.stdout  # its one question scored perfectly
