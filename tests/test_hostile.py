"""Hostile input for `kb ingest`, all in one folder: damaged and odd files next to good ones with odd names.

The real command runs over it (in a real process, with root's permission override dropped so the
unreadable file is unreadable, and in-process through CliRunner). Embeddings come from the test
server's hashed vectors through the real OpenAI-compatible path, so the run stays quick.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.app import ExitCode, app
from tests.conftest import EXAMPLES
from tests.kbcopy import copy_kb
from tests.openai_server import FakeOpenAI
from tests.test_e2e import _without_file_permission_override

# Good files: name -> (content, a word found only in it).
GOOD: dict[str, tuple[str | bytes, str]] = {
    "[draft] (v2).md": ("# Draft\n\nThe bracketed draft mentions quokkadraft.\n", "quokkadraft"),
    "notes with spaces.md": ("# Spaces\n\nSpaced notes mention wombatspace.\n", "wombatspace"),
    "📘 notes.md": ("# Emoji\n\nThe emoji notes mention platypusemoji.\n", "platypusemoji"),
    "笔记 第一章.md": ("# 第一章\n\n部署说明提到 dingochapter 这个词。\n", "dingochapter"),
    "[笔记] 📘 mixed (final) v1.md": ("# 混合\n\nMixed 名字 mention echidnamix.\n", "echidnamix"),
    "sub [x]/第二章 (copy).md": ("# 第二章\n\n子目录提到 numbatsub。\n", "numbatsub"),
    "gbk.txt": ("退款窗口是三十天，关键词 bilbygbk。".encode("gbk") * 3, "bilbygbk"),
    "damaged-utf8.md": (
        ("# Damaged\n\n" + "Café notes mention kiwidamaged. " * 20).encode() + b"\xff\n",
        "kiwidamaged",
    ),
    "link.html": (b"https://example.com/refunds/possumlink", "possumlink"),
    "one-line.txt": (
        "lorem ipsum dolor sit amet " * 40_000 + "wallabyline " + "sed do eiusmod " * 40_000,
        "wallabyline",
    ),
}
# Bad files: name -> the reason kb gives (a prefix of it).
BAD = {
    "[scan] truncated (v1).pdf": "corrupt PDF",
    "密码 📘 encrypted.pdf": "encrypted PDF (a password is needed)",
    "bomb.docx": "Word file would unpack to 300 MB",
    "invalid-utf8.txt": "cannot detect the text encoding",
    "nul bytes.txt": "binary content (NUL bytes) in a text file",
    "cycle a.md": "symbolic link loop",
    "cycle b.md": "symbolic link loop",
    "dangling 🔗.md": "broken symbolic link",
    "unreadable [private].md": "permission denied",
}
UNREADABLE = "unreadable [private].md"
GBK_NAME = "第三章 gbk.md".encode("gbk")  # a name in a legacy encoding, as Windows zips have
BAD[GBK_NAME.decode("utf-8", errors="backslashreplace")] = "file name is not valid UTF-8"


def _write_folder(root: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    for name, (content, _) in GOOD.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    pdf = (EXAMPLES / "runbooks" / "oncall-runbook.pdf").read_bytes()
    (root / "[scan] truncated (v1).pdf").write_bytes(pdf[: len(pdf) // 3])
    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(pdf)).pages:
        writer.add_page(page)
    writer.encrypt(user_password="secret", owner_password="owner")
    with (root / "密码 📘 encrypted.pdf").open("wb") as out:
        writer.write(out)
    with zipfile.ZipFile(root / "bomb.docx", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document>" + " " * (300 * 1024 * 1024))
    (root / "invalid-utf8.txt").write_bytes(bytes(range(128, 256)) * 40)
    (root / "nul bytes.txt").write_bytes(b"abc\x00\x00\x00def" * 20)
    (root / "cycle a.md").symlink_to("cycle b.md")
    (root / "cycle b.md").symlink_to("cycle a.md")
    (root / "dangling 🔗.md").symlink_to("nowhere.md")
    (root / "loop").symlink_to(".")  # folders linked to themselves and to their parent
    (root / "sub [x]" / "up").symlink_to("..")
    (Path(os.fsdecode(os.fsencode(root) + b"/" + GBK_NAME))).write_text("# 第三章\n\nGBK name.\n")
    (root / UNREADABLE).write_text("# Private\n\nNot for kb.\n")
    (root / UNREADABLE).chmod(0)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The folder, a test embedding server, and the environment pointing kb at both."""
    base = tmp_path_factory.mktemp("hostile")
    root = base / "hostile docs"
    root.mkdir()
    _write_folder(root)
    server = FakeOpenAI().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KB_", "OPENAI_"))}
    env |= {
        "KB_KB__HOME": str(base / "home"),
        "KB_EMBEDDING__PROVIDER": "openai",
        "KB_EMBEDDING__BASE_URL": server.base_url,
        "KB_EMBEDDING__DIM": "64",
    }
    try:
        yield {"root": root, "env": env, "base": base}
    finally:
        server.stop()
        (root / UNREADABLE).chmod(0o644)


def _kb_process(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m cli ARGS` as a user whom file permissions bind; never hangs."""
    command = [*_without_file_permission_override(), sys.executable, "-m", "cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def processes(hostile: dict[str, Any]) -> list[subprocess.CompletedProcess[str]]:
    """A first `kb ingest --json` and a second one with --strict, as real processes."""
    root = str(hostile["root"])
    first = _kb_process(["ingest", root, "--json"], hostile["env"])
    again = _kb_process(["ingest", root, "--json", "--strict"], hostile["env"])
    return [first, again]


def _warnings(stderr: str) -> dict[str, str]:
    """`warning: PATH: REASON` lines; every stderr line must be one."""
    lines = stderr.splitlines()
    assert all(line.startswith("warning: ") for line in lines), stderr
    found: dict[str, str] = {}
    for line in lines:
        path, reason = _split_warning(line.removeprefix("warning: "))
        assert path not in found, f"two lines for {path}"
        found[path] = reason
    return found


def _split_warning(text: str) -> tuple[str, str]:
    for name in BAD:
        if text.startswith(f"{name}: "):
            return name, text[len(name) + 2 :]
    raise AssertionError(f"a warning for a file that is not bad: {text}")


def _assert_reasons(found: dict[str, str]) -> None:
    assert sorted(found) == sorted(BAD)
    for name, reason in found.items():
        assert reason.startswith(BAD[name]), (name, reason)


def test_one_line_per_bad_file_and_every_good_file_indexed(
    processes: list[subprocess.CompletedProcess[str]],
) -> None:
    first = processes[0]
    assert first.returncode == ExitCode.OK, first.stderr
    assert "Traceback" not in first.stderr
    _assert_reasons(_warnings(first.stderr))
    report = json.loads(first.stdout)
    assert {p["path"]: p["reason"] for p in report["problems"]} == _warnings(first.stderr)
    assert sorted(report["added"]) == sorted(GOOD)
    assert report["files_total"] == len(GOOD)  # nothing through the folder links
    assert not any(p.startswith(("loop/", "sub [x]/up/")) for p in report["added"])


def test_reingest_is_a_no_op_and_strict_exits_5(
    processes: list[subprocess.CompletedProcess[str]],
) -> None:
    again = processes[1]
    assert again.returncode == ExitCode.INCOMPLETE, again.stderr
    assert "Traceback" not in again.stderr
    _assert_reasons(_warnings(again.stderr))
    report = json.loads(again.stdout)
    assert report["unchanged"] == len(GOOD)
    for key in ("added", "changed", "renamed", "deleted"):
        assert report[key] == [], key
    assert report["chunks_embedded"] == report["chunks_written"] == 0


@pytest.fixture(scope="module")
def in_process(hostile: dict[str, Any]) -> dict[str, Any]:
    """The same folder ingested through CliRunner into a knowledge base of its own.

    Root reads the unreadable file in-process (the real process above is where it is unreadable),
    so it is left out here.
    """
    env = {**hostile["env"], "KB_KB__HOME": str(hostile["base"] / "home-in-process")}
    result = CliRunner().invoke(
        app, ["ingest", str(hostile["root"]), "--json", "--exclude", "unreadable*"], env=env
    )
    return {"env": env, "result": result, "root": hostile["root"]}


def test_in_process_ingest_reports_the_same_lines(in_process: dict[str, Any]) -> None:
    result = in_process["result"]
    assert result.exit_code == ExitCode.OK, result.output
    found = _warnings(result.stderr)
    assert found.pop(UNREADABLE, None) is None
    assert sorted(found) == sorted(set(BAD) - {UNREADABLE})
    assert sorted(json.loads(result.stdout)["added"]) == sorted(GOOD)


def _invoke(in_process: dict[str, Any], args: list[str]) -> Any:
    result = CliRunner().invoke(app, args, env=in_process["env"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_sources_lists_every_good_file_by_its_name(in_process: dict[str, Any]) -> None:
    result = _invoke(in_process, ["sources", "--json"])
    assert result.exit_code == 0, result.stderr
    assert sorted(f["path"] for f in json.loads(result.stdout)["files"]) == sorted(GOOD)


@pytest.mark.parametrize("name", list(GOOD))
def test_every_good_file_is_found_by_its_own_word(in_process: dict[str, Any], name: str) -> None:
    word = GOOD[name][1]
    result = _invoke(in_process, ["ask", word, "--retrieve-only", "--json", "--mode", "sparse"])
    assert result.exit_code == 0, result.stderr
    sources = json.loads(result.stdout)["sources"]
    assert sources[0]["path"] == name
    assert word in sources[0]["text"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        # fnmatch globs: `[` opens a character class, `[[]` is a literal `[`.
        ("[[]draft] (v2).md", {"[draft] (v2).md"}),
        ("[draft] (v2).md", {"[draft] (v2).md"}),  # an exact name is taken literally
        ("*[[]*", {"[draft] (v2).md", "[笔记] 📘 mixed (final) v1.md", "sub [x]/第二章 (copy).md"}),
        ("sub [[]x]/*", {"sub [x]/第二章 (copy).md"}),
        ("📘 notes.md", {"📘 notes.md"}),
        ("笔记*", {"笔记 第一章.md"}),
        ("*/hostile docs/[[]笔记]*", {"[笔记] 📘 mixed (final) v1.md"}),  # on the absolute path
    ],
)
def test_path_filter_selects_odd_names(
    in_process: dict[str, Any], pattern: str, expected: set[str]
) -> None:
    args = ["ask", "mention", "--retrieve-only", "--json", "--top-k", "20", "--path", pattern]
    result = _invoke(in_process, args)
    assert result.exit_code == 0, result.stderr
    assert {s["path"] for s in json.loads(result.stdout)["sources"]} == expected


def test_forget_a_file_with_brackets_and_a_folder_with_brackets(
    in_process: dict[str, Any], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    copy_kb(Path(in_process["env"]["KB_KB__HOME"]), home)
    env = {**in_process["env"], "KB_KB__HOME": str(home)}
    root: Path = in_process["root"]
    for target, gone in [
        (root / "[draft] (v2).md", "[draft] (v2).md"),
        (root / "sub [x]", "sub [x]/第二章 (copy).md"),
    ]:
        result = CliRunner().invoke(app, ["forget", str(target), "--json"], env=env)
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["removed"] == [gone]
    listed = CliRunner().invoke(app, ["sources", "--json"], env=env)
    paths = {f["path"] for f in json.loads(listed.stdout)["files"]}
    assert paths == set(GOOD) - {"[draft] (v2).md", "sub [x]/第二章 (copy).md"}


def test_a_long_text_chunks_the_same_however_it_is_streamed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sentences are split a window at a time (memory bounded on huge files); where windows end
    never changes the chunks of text whose sentences are shorter than a window."""
    import core.chunking
    from core.loaders import LoadedText
    from core.text import approx_tokens

    text = " ".join(f"Sentence {i} about 退款 {i % 7}。Item {i}; done!" for i in range(3000))
    loaded = LoadedText(text, "text")

    def chunks() -> list[tuple[int, int, str]]:
        found = core.chunking.chunk_text(
            loaded, count_tokens=approx_tokens, chunk_size=128, chunk_overlap=16
        )
        return [(c.start, c.end, c.text) for c in found]

    whole = chunks()
    monkeypatch.setattr(core.chunking, "SENTENCE_WINDOW", 200)
    assert chunks() == whole
    assert len(text) > 100 * 200
