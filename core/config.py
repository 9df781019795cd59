"""Settings and their loading: defaults < the user's config.toml < the user's .env < the project's
config.toml < the project's .env < KB_* environment < command-line flags.

Every value remembers where it came from, so `kb config` can say so, and every settings file that was
looked for is listed, found or not. Secrets (API keys) are read only from a `.env` or the environment,
never from a config.toml.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from core.embedders import SPECS, describe_providers
from core.errors import ConfigError
from core.presets import LLM_PRESETS, NO_LLM

ENV_PREFIX = "KB_"
CONFIG_ENV = "KB_CONFIG"  # the project config.toml to read instead of ./config.toml
USER_DIR_ENV = "KB_CONFIG_HOME"  # the per-user settings folder instead of the platform's
NOT_SETTINGS = frozenset({CONFIG_ENV, USER_DIR_ENV})  # KB_ variables that name files, not settings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _llm_providers() -> str:
    presets = ", ".join(
        f"{name} ({preset.label})" if preset.label else name for name, preset in LLM_PRESETS.items()
    )
    return f"{NO_LLM}: extractive answers, offline; {presets}: presets of base_url, model and key"


def _one_of(value: Any, names: Sequence[str]) -> Any:
    """`value` if it is one of `names`, else the error pydantic gives for a Literal of them."""
    if value not in names:
        quoted = [repr(name) for name in names]
        expected = f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
        raise PydanticCustomError(
            "literal_error", "Input should be {expected}", {"expected": expected}
        )
    return value


class KbSettings(_Section):
    home: str = Field(
        "", description="Folder holding the knowledge bases; empty: the per-user data dir"
    )
    name: str = Field("default", description="Which named knowledge base to use (--kb NAME)")
    link: str = Field(
        "",
        description="Source link template, e.g. vscode://file{path}:{line}; empty: file://PATH#L12",
    )


class EmbeddingSettings(_Section):
    provider: str = Field("local-dual", description=describe_providers())
    model: str = Field(
        "", description="Model name for fastembed/openai; empty: the provider's default"
    )
    base_url: str = Field(
        "", description="Endpoint for provider=openai, e.g. http://localhost:11434/v1"
    )
    api_key: SecretStr | None = Field(
        None, description="Secret: KB_EMBEDDING__API_KEY in .env or env"
    )
    dim: int = Field(0, ge=0, description="Vector size for provider=openai; 0: ask the endpoint")
    batch_size: int = Field(16, ge=1, le=2048, description="Texts embedded per call")
    cache: bool = Field(
        True, description="Cache embeddings by (model, text hash) so text is embedded once"
    )
    model_cache: str = Field(
        "",
        description="Folder for models built on first use (e5's ONNX graph, USE's unpacked copy); "
        "empty: the per-user cache dir",
    )
    timeout: float = Field(30.0, gt=0, description="Seconds before a remote embedding call fails")
    max_retries: int = Field(
        2, ge=0, le=5, description="Retries on connection errors, 429 and 5xx (with backoff)"
    )

    @field_validator("provider", mode="before")
    @classmethod
    def _known_provider(cls, value: Any) -> Any:
        return _one_of(value, list(SPECS))


class LlmSettings(_Section):
    provider: str = Field(NO_LLM, description=_llm_providers())
    base_url: str = Field("", description="OpenAI-compatible base URL; empty: the preset's")
    model: str = Field("", description="Chat model name; empty: the preset's")
    api_key: SecretStr | None = Field(
        None,
        description="Secret: KB_LLM__API_KEY or the preset's variable (e.g. DEEPSEEK_API_KEY) in .env or env",
    )
    temperature: float = Field(0.1, ge=0, le=2, description="Sampling temperature")
    max_tokens: int = Field(1024, ge=16, le=32768, description="Longest answer, in tokens")
    timeout: float = Field(60.0, gt=0, description="Seconds to wait for the endpoint's reply")
    max_retries: int = Field(
        2, ge=0, le=5, description="Retries on connection errors, 429 and 5xx (with backoff)"
    )

    @field_validator("provider", mode="before")
    @classmethod
    def _known_provider(cls, value: Any) -> Any:
        return _one_of(value, [NO_LLM, *LLM_PRESETS])


class StoreSettings(_Section):
    backend: Literal["edge", "qdrant"] = Field(
        "edge",
        description="edge: embedded Qdrant Edge in the kb folder; qdrant: a Qdrant server or "
        "cluster at url, through qdrant-client",
    )
    path: str = Field("", description="Folder of this knowledge base; empty: <home>/<name>")
    url: str = Field(
        "",
        description="backend=qdrant: server URL, e.g. http://localhost:6333; "
        "file:///DIR: qdrant-client's local mode (for tests)",
    )
    api_key: SecretStr | None = Field(None, description="Secret: KB_STORE__API_KEY in .env or env")
    collection: str = Field("", description="backend=qdrant: collection name; empty: kb_<name>")
    shards: int = Field(1, ge=1, le=1024, description="backend=qdrant: shards of a new collection")
    replicas: int = Field(
        1, ge=1, le=16, description="backend=qdrant: copies of each shard (replication factor)"
    )
    timeout: float = Field(30.0, gt=0, description="backend=qdrant: seconds per server request")
    index_after: int = Field(
        20_000,
        ge=10,
        description="backend=edge: chunks a segment holds before ingest indexes it (HNSW); "
        "smaller knowledge bases are searched exactly",
    )


class IngestSettings(_Section):
    chunk_size: int = Field(
        384, ge=128, le=512, description="Chunk size in embedder tokens (128 to 512)"
    )
    chunk_overlap: int = Field(48, ge=0, le=256, description="Tokens shared by neighbouring chunks")
    include: tuple[str, ...] = Field((), description="Only files matching one of these globs")
    exclude: tuple[str, ...] = Field((), description="Skip files matching any of these globs")
    gitignore: bool = Field(True, description="Skip paths ignored by .gitignore files")
    hidden: bool = Field(False, description="Also read hidden files and folders")
    max_file_mb: float = Field(50.0, gt=0, description="Skip files larger than this")
    ocr: Literal["auto", "always", "never"] = Field(
        "auto",
        description="OCR of scans, images and garbled PDF pages (auto: where text is missing; needs kb[ocr])",
    )

    @model_validator(mode="after")
    def _overlap_fits(self) -> IngestSettings:
        if self.chunk_overlap > self.chunk_size // 2:
            raise ValueError("chunk_overlap must be at most half of chunk_size")
        return self

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        """From the environment, globs arrive as one comma-separated string."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


class RetrievalSettings(_Section):
    mode: Literal["hybrid", "dense", "sparse"] = Field("hybrid", description="Retrieval mode")
    top_k: int = Field(5, ge=1, le=100, description="Chunks to retrieve")
    dense_weight: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Hybrid: weight of the min-max normalised dense score (the rest: keyword score)",
    )
    balance_languages: bool = Field(
        True, description="Dense search once per language present, so questions cross languages"
    )
    context: int = Field(
        0, ge=0, le=5, description="Neighbouring chunks added on each side of a hit (--context)"
    )
    min_score: float | Literal["auto"] = Field(
        "auto",
        description="auto: refuse from the knowledge base's own baseline and keyword coverage "
        "(bundled embedders; others: off); a number: refuse below this best dense cosine; "
        "0: never refuse",
    )
    reranker: str = Field(
        "",
        description="fastembed cross-encoder model to rerank with (needs kb[fastembed]); empty: off",
    )


class Settings(_Section):
    kb: KbSettings = KbSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    llm: LlmSettings = LlmSettings()
    store: StoreSettings = StoreSettings()
    ingest: IngestSettings = IngestSettings()
    retrieval: RetrievalSettings = RetrievalSettings()

    def kb_dir(self) -> Path:
        """The folder of the selected knowledge base."""
        if self.store.path:
            return Path(self.store.path).expanduser()
        return kb_home(self.kb.home) / self.kb.name


SECRET_KEYS = frozenset({"embedding.api_key", "llm.api_key", "store.api_key"})


def kb_home(home: str = "") -> Path:
    """Where named knowledge bases live: `[kb] home`, else the per-user data directory."""
    if home:
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("kb", appauthor=False))


def user_cache_dir() -> Path:
    """kb's per-user cache folder (`~/.cache/kb` on Linux): what is built on first use and can be
    built again (models, jieba's dictionary file)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("kb", appauthor=False))


def user_config_dir(environ: Mapping[str, str]) -> Path:
    """The per-user settings folder: `$KB_CONFIG_HOME`, else the platform's (`~/.config/kb` on Linux)."""
    if environ.get(USER_DIR_ENV):
        return Path(environ[USER_DIR_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("kb", appauthor=False))


DEFAULT_ORIGIN = "default"
FILE_ORIGINS = ("config file", "user config file")
BUILT_ORIGIN = "knowledge base"  # a value taken from how the knowledge base was built


@dataclass(frozen=True)
class SettingsFile:
    """A settings file that was looked for, and whether it was there (and read)."""

    role: str  # "user config", "user .env", "config", ".env"
    path: Path
    found: bool


@dataclass(frozen=True)
class LoadedSettings:
    """Settings plus, for every key that was set, where its value came from."""

    settings: Settings
    origins: Mapping[str, str]
    config_path: Path | None
    files: tuple[SettingsFile, ...] = ()

    def explicit(self, key: str) -> bool:
        """Whether the user chose `key` ("section.name"): a flag, the environment, a .env, or a
        config file that sets it to something other than the default. A config.toml copied from the
        documented defaults chooses nothing."""
        origin = self.origins.get(key, DEFAULT_ORIGIN)
        if origin == DEFAULT_ORIGIN or origin.startswith(BUILT_ORIGIN):
            return False
        if not origin.startswith(FILE_ORIGINS):
            return True
        section, name = key.split(".")
        default = type(getattr(self.settings, section)).model_fields[name].default
        return bool(getattr(getattr(self.settings, section), name) != default)


def load_settings(
    config_path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    dotenv_path: Path | None = None,
    user_dir: Path | None = None,
) -> LoadedSettings:
    """Defaults < user config.toml < user .env < config.toml < .env < KB_* environment < overrides
    (command-line flags).

    The user's files are `config.toml` and `.env` in `user_dir`, else `$KB_CONFIG_HOME`, else the
    per-user config folder (platformdirs: `~/.config/kb/` on Linux). The project's config.toml is
    `config_path`, else `$KB_CONFIG`, else `./config.toml` when present; its .env is `dotenv_path`,
    else `./.env`. Environment keys are `KB_SECTION__KEY`, e.g. `KB_EMBEDDING__PROVIDER=openai`.
    """
    env = os.environ if environ is None else environ
    user = user_dir if user_dir is not None else user_config_dir(env)
    user_toml_path, user_dotenv_path = user / "config.toml", user / ".env"
    user_toml = _read_toml(user_toml_path, required=False)
    explicit = config_path is not None or CONFIG_ENV in env
    path = config_path or Path(env.get(CONFIG_ENV, "config.toml"))
    toml_layer = _read_toml(path, required=explicit)
    if not explicit and toml_layer and not set(toml_layer) & set(Settings.model_fields):
        # A ./config.toml that belongs to another tool (no kb section at all) is not ours.
        toml_layer = {}
    for where, layer in ((user_toml_path, user_toml), (path, toml_layer)):
        _no_secrets(where, layer)
    dotenv_file = dotenv_path or Path(".env")
    user_env = _read_dotenv(user_dotenv_path)
    dotenv_env = _read_dotenv(dotenv_file)
    layers: list[tuple[str, dict[str, Any]]] = [
        (f"user config file {user_toml_path}", user_toml),
        (f"user .env ({user_dotenv_path})", _from_env(user_env)),
        (f"config file {path}", toml_layer),
        (f".env ({dotenv_file})", _from_env(dotenv_env)),
        ("environment", _from_env(env)),
        ("command line", _prune_none(dict(overrides or {}))),
    ]
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for origin, layer in layers:
        for section, values in layer.items():
            if not isinstance(values, dict):
                raise ConfigError(
                    f"'{section}' must be a section, not a value",
                    hint=f"write it as [{section}] ({origin})",
                )
            for key, value in values.items():
                merged.setdefault(section, {})[key] = value
                origins[f"{section}.{key}"] = origin
    _preset_key(
        merged,
        origins,
        [("user .env", user_env), (".env", dotenv_env), ("environment", env)],
    )
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_describe(err, origins), hint="see `kb config` and config.toml") from err
    used = path if path.exists() and (explicit or toml_layer) else None
    files = (
        SettingsFile("user config", user_toml_path, user_toml_path.is_file()),
        SettingsFile("user .env", user_dotenv_path, user_dotenv_path.is_file()),
        SettingsFile("config", path, used is not None),
        SettingsFile(".env", dotenv_file, dotenv_file.is_file()),
    )
    return LoadedSettings(settings, origins, used, files)


def effective_items(loaded: LoadedSettings) -> list[tuple[str, str, str]]:
    """Every setting as (key, value with secrets masked, origin), for `kb config`. An empty value
    that a preset or the embedder fills in is shown as used: the preset's base URL and model."""
    rows: list[tuple[str, str, str]] = []
    dumped = loaded.settings.model_dump()
    filled = _filled_in(loaded.settings)
    for section, values in dumped.items():
        for key, value in values.items():
            dotted = f"{section}.{key}"
            origin = loaded.origins.get(dotted, DEFAULT_ORIGIN)
            if dotted in SECRET_KEYS:
                shown = mask_secret(value)
            elif isinstance(value, tuple | list):
                shown = ", ".join(map(str, value)) or "(none)"
            elif value == "" and dotted in filled:
                shown, origin = filled[dotted]
            else:
                shown = str(value) if value != "" else '""'
            rows.append((dotted, shown, origin))
    return rows


def _filled_in(settings: Settings) -> dict[str, tuple[str, str]]:
    """The values empty settings stand for: {key: (value, where it comes from)}."""
    filled: dict[str, tuple[str, str]] = {}
    preset = LLM_PRESETS.get(settings.llm.provider)
    if preset is not None:
        for key, value in (("base_url", preset.base_url), ("model", preset.model)):
            if value:
                filled[f"llm.{key}"] = (value, f"preset {settings.llm.provider}")
    spec = SPECS[settings.embedding.provider]
    if spec.model:
        filled["embedding.model"] = (spec.model, f"{spec.name} embedder")
    return filled


def mask_secret(value: SecretStr | None) -> str:
    """A secret as `sk-…abcd` (never more than its last four characters), or `(not set)`."""
    if value is None:
        return "(not set)"
    raw = value.get_secret_value()
    return "****" if len(raw) < 12 else f"{raw[:3]}…{raw[-4:]}"


def _preset_key(
    merged: dict[str, Any],
    origins: dict[str, str],
    sources: list[tuple[str, Mapping[str, str]]],
) -> None:
    """Without KB_LLM__API_KEY, an LLM preset's own variable (e.g. DEEPSEEK_API_KEY) supplies the key."""
    llm = merged.get("llm", {})
    preset = LLM_PRESETS.get(str(llm.get("provider", "")))
    if "api_key" in llm or preset is None or not preset.key_env:
        return
    for origin, values in reversed(sources):  # the environment beats .env
        if values.get(preset.key_env):
            merged["llm"]["api_key"] = values[preset.key_env]
            origins["llm.api_key"] = f"{origin} ({preset.key_env})"
            return


def _no_secrets(path: Path, layer: Mapping[str, Any]) -> None:
    for key in SECRET_KEYS:
        section, name = key.split(".")
        values = layer.get(section, {})
        if isinstance(values, dict) and name in values:
            raise ConfigError(
                f"{key} must not be written in {path}",
                hint=f"put KB_{section.upper()}__{name.upper()}=... in .env or the environment",
            )


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _read_toml(path: Path, *, required: bool) -> dict[str, Any]:
    if not path.exists():
        if required:
            raise ConfigError(f"config file not found: {path}", hint="check --config or KB_CONFIG")
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}", hint="fix the TOML syntax") from err


def _from_env(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """`KB_SECTION__KEY=value` as {section: {key: value}}. `KB_CONFIG` and `KB_CONFIG_HOME` name
    files, not settings."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS:
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(
                f"environment variable {name} is not of the form KB_SECTION__KEY",
                hint="for example KB_EMBEDDING__PROVIDER=openai",
            )
        section, key = parts
        out.setdefault(section, {})[key] = value
    return out


def _prune_none(values: dict[str, Any]) -> dict[str, Any]:
    pruned: dict[str, Any] = {}
    for section, inner in values.items():
        kept = {k: v for k, v in inner.items() if v is not None}
        if kept:
            pruned[section] = kept
    return pruned


def _describe(err: ValidationError, origins: Mapping[str, str]) -> str:
    first = err.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    origin = origins.get(key) or next(
        (o for k, o in origins.items() if k.startswith(f"{key}.")), ""
    )
    where = f" (from {origin})" if origin else ""
    if first["type"] == "extra_forbidden":
        return f"unknown setting '{key}'{where}"
    return f"bad value for '{key}'{where}: {first['msg']}"
