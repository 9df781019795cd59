"""core.jiebadict: jieba's dictionary read word by word from a file gives jieba's own tokens."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import unicodedata
from pathlib import Path

import jieba
import pytest

from core import jiebadict, text
from core.jiebadict import LazyFreq, Segmenter, open_freq, segmenter

EXAMPLES = Path(__file__).parents[1] / "examples" / "docs"

# Our own sentences: rare names and new words (jieba's HMM path), repeats, numbers and Latin inside.
OWN = [
    "他来到了网易杭研大厦，小明硕士毕业于中国科学院计算所，后在日本京都大学深造。",
    "黑豹队在第50届超级碗中以24比10击败了野马队，领先NFL联盟。",
    "工信处女干事每月经过下属科室都要亲口交代24口交换机等技术性器件的安装工作",
    "结婚的和尚未结婚的都应该参加这次长江大桥研讨会；南京市长江大桥通车了。",
    "删除的笔记会在回收站保留多久？",
]


def _chinese_samples() -> list[str]:
    files = sorted(p for p in EXAMPLES.rglob("*") if p.is_file())
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in files]
    chinese = [t for t in texts if text._CJK_RUN.search(t)]
    assert len(chinese) >= 3, "the examples lost their Chinese files"
    runs = [
        m.group()
        for t in chinese
        for m in text._CJK_RUN.finditer(unicodedata.normalize("NFKC", t).lower())
    ]
    return OWN + chinese + runs  # whole files as jieba sees them, and the runs kb feeds it


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp("jiebadict")
    open_freq(built).close()
    return built


def test_lazy_dictionary_gives_jiebas_own_tokens(folder: Path) -> None:
    samples = _chinese_samples()
    freq = open_freq(folder)
    cut = Segmenter(freq)
    lazy = [cut(s) for s in samples]
    assert cut.lazy
    assert 0 < freq.lookups < jiebadict.LOOKUP_BUDGET  # really read from the file
    assert lazy == [jieba.lcut_for_search(s) for s in samples]
    assert sum(map(len, lazy)) > 1000


def test_tokenize_in_a_fresh_process_reads_the_file_and_gives_the_same_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the real path: a new process (nothing loaded), the cache folder from the
    environment (the test run's), the file built or reused, `tokenize` as kb calls it."""
    sample = "\n".join(OWN) + (EXAMPLES / "常见问题.md").read_text(encoding="utf-8")
    code = (
        "import json, sys, jieba; from core import text, jiebadict; "
        "tokens = list(text.tokenize(sys.stdin.read())); "
        "print(json.dumps([isinstance(text._jieba_cut(), jiebadict.Segmenter), "
        "text._jieba_cut().lazy, jieba.dt.initialized, tokens]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=sample, capture_output=True, text=True, check=True
    )
    is_segmenter, lazy, loaded, tokens = json.loads(out.stdout)
    assert (is_segmenter, lazy, loaded) == (True, True, False)  # jieba's dictionary never loaded
    monkeypatch.setattr(text, "_jieba_cut", lambda: jieba.lcut_for_search)  # jieba's own cut
    assert tokens == list(text.tokenize(sample))
    assert len(tokens) > 200


def test_many_words_switch_to_the_whole_dictionary(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jiebadict, "LOOKUP_BUDGET", 10)
    cut = Segmenter(open_freq(folder))
    first = cut(OWN[0])
    assert not cut.lazy  # more than 10 words read: the next cut is jieba's own
    assert first == jieba.lcut_for_search(OWN[0])
    assert cut(OWN[1]) == jieba.lcut_for_search(OWN[1])


def test_a_failing_file_falls_back_to_plain_jieba(folder: Path) -> None:
    freq = open_freq(folder)
    cut = Segmenter(freq)
    freq.close()  # every read now raises sqlite3.ProgrammingError
    assert cut(OWN[2]) == jieba.lcut_for_search(OWN[2])
    assert not cut.lazy


def test_missing_file_is_built_and_reused(tmp_path: Path) -> None:
    folder = tmp_path / "cache" / "jieba"
    freq = open_freq(folder)
    (path,) = folder.glob("freq-*.sqlite")
    assert jieba.__version__ in path.name
    jieba.dt.check_initialized()
    assert freq.total == jieba.dt.total
    prefix = next(w for w, n in jieba.dt.FREQ.items() if n == 0)  # a prefix that is no word
    for word in ["回收站", "回收", "的", prefix]:
        assert word in freq
        assert freq[word] == freq.get(word) == jieba.dt.FREQ[word]
    assert "回收站不存在" not in freq
    assert freq.get("回收站不存在", 7) == 7
    with pytest.raises(KeyError):
        freq["回收站不存在"]
    built = path.stat().st_mtime_ns
    open_freq(folder).close()
    assert path.stat().st_mtime_ns == built  # opened, not rebuilt
    assert [p.name for p in folder.iterdir()] == [path.name]  # no temporary file left


@pytest.mark.parametrize("damage", [b"", b"not a database at all" * 100, "truncated"])
def test_damaged_file_is_rebuilt(tmp_path: Path, folder: Path, damage: bytes | str) -> None:
    (good,) = folder.glob("freq-*.sqlite")
    path = tmp_path / good.name
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 3] if damage == "truncated" else damage)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.Error):
        LazyFreq(path)
    freq = open_freq(tmp_path)
    assert path.stat().st_size == good.stat().st_size
    cut = Segmenter(freq)
    assert cut(OWN[3]) == jieba.lcut_for_search(OWN[3])


def test_unwritable_cache_folder_means_plain_jieba(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(NotADirectoryError):
        open_freq(blocker / "jieba")
    cut = segmenter(blocker / "jieba")
    assert not isinstance(cut, Segmenter)
    assert cut(OWN[4]) == jieba.lcut_for_search(OWN[4])


def test_threads_share_one_lazy_dictionary(folder: Path) -> None:
    samples = _chinese_samples()
    cut = Segmenter(open_freq(folder))
    results: dict[int, list[list[str]]] = {}

    def work(n: int) -> None:
        results[n] = [cut(s) for s in samples[n::2] + samples[: n + 1]]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n in range(4):
        assert results[n] == [jieba.lcut_for_search(s) for s in samples[n::2] + samples[: n + 1]]
