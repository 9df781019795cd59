"""Configuration: precedence, origins, validation, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import effective_items, load_settings
from core.errors import ConfigError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_any_file() -> None:
    loaded = load_settings(environ={})
    assert loaded.settings.retrieval.mode == "hybrid"
    assert loaded.settings.embedding.provider == "local-dual"
    assert loaded.config_path is None


def test_precedence_defaults_toml_dotenv_env_flags(tmp_path: Path) -> None:
    toml = _write(
        tmp_path / "c.toml", "[retrieval]\ntop_k = 3\nmode = 'dense'\n[ingest]\nchunk_size = 200\n"
    )
    dotenv = _write(tmp_path / ".env", "KB_RETRIEVAL__TOP_K=4\nKB_INGEST__CHUNK_OVERLAP=10\n")
    loaded = load_settings(
        toml,
        environ={"KB_RETRIEVAL__TOP_K": "6"},
        overrides={"retrieval": {"top_k": 9, "mode": None}},
        dotenv_path=dotenv,
    )
    s = loaded.settings
    assert s.retrieval.top_k == 9  # flag beats env beats .env beats toml
    assert s.retrieval.mode == "dense"  # a flag left unset (None) does not override
    assert s.ingest.chunk_size == 200
    assert s.ingest.chunk_overlap == 10
    origins = {key: origin for key, _, origin in effective_items(loaded)}
    assert origins["retrieval.top_k"] == "command line"
    assert origins["retrieval.mode"].startswith("config file")
    assert origins["ingest.chunk_overlap"].startswith(".env")
    assert origins["kb.name"] == "default"


def test_env_beats_dotenv(tmp_path: Path) -> None:
    dotenv = _write(tmp_path / ".env", "KB_RETRIEVAL__TOP_K=4\n")
    loaded = load_settings(environ={"KB_RETRIEVAL__TOP_K": "7"}, dotenv_path=dotenv)
    assert loaded.settings.retrieval.top_k == 7


def test_kb_config_variable_selects_the_file(tmp_path: Path) -> None:
    toml = _write(tmp_path / "other.toml", "[kb]\nname = 'work'\n")
    loaded = load_settings(environ={"KB_CONFIG": str(toml)})
    assert loaded.settings.kb.name == "work"
    assert loaded.config_path == toml


@pytest.mark.parametrize(
    ("toml", "environ", "needle"),
    [
        ("[retrieval]\ntopk = 3\n", {}, "unknown setting 'retrieval.topk'"),
        ("[retrival]\ntop_k = 3\n", {}, "unknown setting 'retrival'"),
        ("[retrieval]\nmode = 'fuzzy'\n", {}, "bad value for 'retrieval.mode'"),
        (
            "",
            {"KB_INGEST__CHUNK_SIZE": "99999"},
            "bad value for 'ingest.chunk_size' (from environment)",
        ),
        ("", {"KB_TOPK": "3"}, "KB_TOPK is not of the form KB_SECTION__KEY"),
        ("top_k = 3\n", {}, "'top_k' must be a section"),
        ("[retrieval\n", {}, "cannot read"),
    ],
)
def test_bad_configuration_is_one_line_naming_the_key(
    tmp_path: Path, toml: str, environ: dict[str, str], needle: str
) -> None:
    path = _write(tmp_path / "c.toml", toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=environ)
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)
    assert caught.value.hint


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_secrets_are_refused_in_config_toml(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.toml", "[llm]\napi_key = 'sk-secret-1234567890'\n")
    with pytest.raises(ConfigError, match=r"llm.api_key must not be written") as caught:
        load_settings(path, environ={})
    assert "sk-secret" not in str(caught.value)


def test_secrets_are_masked_in_effective_config(tmp_path: Path) -> None:
    dotenv = _write(tmp_path / ".env", "KB_LLM__API_KEY=sk-planted-SECRET-abcd\n")
    loaded = load_settings(environ={}, dotenv_path=dotenv)
    assert loaded.settings.llm.api_key is not None
    rows = {key: value for key, value, _ in effective_items(loaded)}
    assert rows["llm.api_key"] == "sk-…abcd"
    assert "SECRET" not in repr(loaded.settings)
    assert rows["embedding.api_key"] == "(not set)"


def test_globs_from_environment_are_comma_separated() -> None:
    loaded = load_settings(environ={"KB_INGEST__EXCLUDE": "*.log, drafts/*"})
    assert loaded.settings.ingest.exclude == ("*.log", "drafts/*")


def test_kb_dir_follows_home_and_name(tmp_path: Path) -> None:
    loaded = load_settings(environ={}, overrides={"kb": {"home": str(tmp_path), "name": "team"}})
    assert loaded.settings.kb_dir() == tmp_path / "team"
    pinned = load_settings(environ={}, overrides={"store": {"path": str(tmp_path / "x")}})
    assert pinned.settings.kb_dir() == tmp_path / "x"


def test_shipped_config_toml_documents_every_key_with_its_default() -> None:
    from core.config import SECRET_KEYS, Settings

    shipped = Path(__file__).resolve().parents[1] / "config.toml"
    loaded = load_settings(shipped, environ={})
    assert loaded.settings == Settings()
    text = shipped.read_text(encoding="utf-8")
    for section, model in Settings.model_fields.items():
        assert f"[{section}]" in text
        assert model.annotation is not None
        for key, field in model.annotation.model_fields.items():
            dotted = f"{section}.{key}"
            assert (f"# {key}" if dotted in SECRET_KEYS else f"\n{key} =") in text, dotted
            assert field.description is not None
            first_part = field.description.split(";")[0]
            assert first_part in text, f"{dotted}: config.toml comment differs from the code"


def test_another_tools_config_toml_in_the_working_directory_is_ignored() -> None:
    Path("config.toml").write_text('baseURL = "https://example.org"\n[params]\ntheme = "x"\n')
    loaded = load_settings(environ={})
    assert loaded.config_path is None
    assert loaded.settings.retrieval.top_k == 5
    with pytest.raises(ConfigError, match="'baseURL' must be a section"):
        load_settings(Path("config.toml"), environ={})  # named explicitly: it must be ours


def test_unknown_section_names_its_origin() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'foo' \(from environment\)"):
        load_settings(environ={"KB_FOO__BAR": "1"})


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"KB_INGEST__CHUNK_SIZE": "64"}, "ingest.chunk_size"),
        ({"KB_INGEST__CHUNK_SIZE": "200", "KB_INGEST__CHUNK_OVERLAP": "150"}, "at most half"),
    ],
)
def test_chunking_settings_must_fit_together(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_settings(environ=env)
