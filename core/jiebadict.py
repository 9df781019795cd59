"""jieba's prefix dictionary read word by word from a file, for processes that segment little text.

jieba's first cut loads its whole prefix dictionary (~500,000 words and prefixes, ~0.55 s of CPU from
its marshal cache). A `kb ask` segments one question and a few sources: some thousands of lookups.
`segmenter()` gives a cut whose jieba `Tokenizer` reads `FREQ` from a SQLite table built once from
jieba's own dictionary (the same words, counts and total, so the same tokens) and remembers what it
read. jieba reads the dictionary only through `FREQ` (`in`, `[]`, `.get`) and `total`.

A process that reads more than `LOOKUP_BUDGET` distinct words from the file (an ingest: whole
documents) has paid about half the full load by then (~0.3 s); from then on it uses plain jieba,
which loads the whole dictionary once. A 500-character text reads ~600 words (~0.01 s). Anything that goes wrong with the file (no writable cache folder, a damaged file,
a SQLite error) also means plain jieba: the tokens are the same either way, only the cost differs.

The file is `<user cache dir>/kb/jieba/freq-<jieba version>-<dict.txt CRC-32>.sqlite`, built on first
use (~1 s of CPU) into a temporary file and renamed, rebuilt when missing or unreadable.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LOOKUP_BUDGET = 50_000  # words read from the file (4-7 us each with the cut) before loading it all
_FORMAT = 1  # bump when the table layout changes


def default_folder() -> Path:
    """`<user cache dir>/kb/jieba` (platformdirs: `~/.cache/kb/jieba` on Linux)."""
    from core.config import user_cache_dir

    return user_cache_dir() / "jieba"


def segmenter(folder: Path | None = None) -> Callable[[str], list[str]]:
    """`jieba.lcut_for_search`, reading the dictionary from a file in `folder` while that pays."""
    import jieba

    plain: Callable[[str], list[str]] = jieba.lcut_for_search
    if jieba.dt.initialized or jieba.dt.dictionary is not None:
        return plain  # already loaded (nothing left to save), or a custom dictionary
    try:
        freq = open_freq(folder or default_folder())
    except (OSError, sqlite3.Error, ValueError) as error:
        logger.info("jieba: reading the whole dictionary (%s)", error)
        return plain
    return Segmenter(freq)


def open_freq(folder: Path) -> LazyFreq:
    """The dictionary file in `folder` for this jieba, built first if missing, rebuilt if damaged."""
    path = folder / f"freq-{_dictionary_key()}.sqlite"
    if path.exists():
        try:
            return LazyFreq(path)
        except sqlite3.Error as error:
            logger.info("jieba: rebuilding %s (%s)", path, error)
    build(path)
    return LazyFreq(path)


def build(path: Path) -> None:
    """Write jieba's prefix dictionary (`Tokenizer.gen_pfdict`, what `initialize` loads) to `path`."""
    import jieba

    tokenizer = jieba.Tokenizer()
    freq, total = tokenizer.gen_pfdict(tokenizer.get_dict_file())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        connection = sqlite3.connect(temp)
        try:
            connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            connection.execute(
                "CREATE TABLE freq (word TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID"
            )
            connection.executemany("INSERT INTO freq VALUES (?, ?)", sorted(freq.items()))
            connection.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("format", _FORMAT), ("total", total), ("words", len(freq))],
            )
            connection.commit()
        finally:
            connection.close()
        os.replace(temp, path)  # whole or not at all, also when two processes build at once
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class LazyFreq:
    """A read-only `FREQ` for jieba: word -> count (0 for a prefix that is no word), read on demand.

    Safe to share between threads: answers are remembered in a dict, the file is read under a lock."""

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
        )
        self._lock = threading.Lock()
        self._memo: dict[str, int | None] = {}
        self.lookups = 0  # words read from the file
        try:
            meta = dict(self._connection.execute("SELECT key, value FROM meta").fetchall())
            self.total = int(meta["total"])
            pages = self._connection.execute("PRAGMA page_count").fetchone()[0]
            page_size = self._connection.execute("PRAGMA page_size").fetchone()[0]
            complete = (
                meta.get("format") == _FORMAT
                and pages * page_size == path.stat().st_size  # not cut short
                and self.get("的") is not None
            )
        except (sqlite3.Error, OSError, KeyError, TypeError, ValueError) as error:
            self._connection.close()
            raise sqlite3.DatabaseError(f"unreadable dictionary file {path}: {error}") from error
        if not complete:
            self._connection.close()
            raise sqlite3.DatabaseError(f"incomplete dictionary file {path}")

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def get(self, word: str, default: Any = None) -> Any:
        try:
            found = self._memo[word]
        except KeyError:
            with self._lock:
                row = self._connection.execute(
                    "SELECT n FROM freq WHERE word = ?", (word,)
                ).fetchone()
                self.lookups += 1
            found = self._memo[word] = None if row is None else int(row[0])
        return default if found is None else found

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and self.get(word) is not None

    def __getitem__(self, word: str) -> int:
        found: int | None = self.get(word)
        if found is None:
            raise KeyError(word)
        return found


class Segmenter:
    """`lcut_for_search` on a jieba `Tokenizer` over a `LazyFreq`, until the budget or an error;
    jieba's own after that."""

    def __init__(self, freq: LazyFreq) -> None:
        import jieba

        tokenizer = jieba.Tokenizer()
        tokenizer.FREQ, tokenizer.total = freq, freq.total
        tokenizer.initialized = True  # `check_initialized` would load the whole dictionary
        self._freq = freq
        self._lazy: Callable[[str], list[str]] | None = tokenizer.lcut_for_search
        self._plain: Callable[[str], list[str]] = jieba.lcut_for_search

    @property
    def lazy(self) -> bool:
        """Still reading the dictionary file (not yet switched to plain jieba)."""
        return self._lazy is not None

    def __call__(self, text: str) -> list[str]:
        lazy = self._lazy
        if lazy is not None:
            try:
                words = lazy(text)
            except sqlite3.Error as error:
                logger.warning(
                    "jieba: dictionary file failed (%s); reading the whole dictionary", error
                )
                self._lazy = None
            else:
                if self._freq.lookups > LOOKUP_BUDGET:
                    self._lazy = None  # segmenting a lot: the next cut loads the whole dictionary
                return words
        return self._plain(text)


def _dictionary_key() -> str:
    """jieba's version and the CRC-32 of its dict.txt (~5 MB: ~4 ms to read and sum)."""
    import jieba

    dictionary = Path(jieba.__file__).with_name(jieba.DEFAULT_DICT_NAME)  # what get_dict_file opens
    checksum = zlib.crc32(dictionary.read_bytes())
    return f"{jieba.__version__}-{checksum:08x}"
