"""Is an extracted text layer mojibake? One small, explainable check per page.

A PDF font without a Unicode map gives its glyph numbers back as if they were characters: pypdf
reads the Chinese textbook in `data/docs-real/` as "ߋ႒ಀ۲ն..." (NKo, Myanmar, Kannada, Armenian, ...
29 scripts on one page), with no error. Other broken fonts give private-use code points, U+FFFD
replacement characters or control characters. Real pages use few scripts: Latin for names and
formulas, Greek for maths, and one or two writing systems (Chinese and Japanese count as one, with
their kana, Hangul and Bopomofo). So a page is garbled when

- 10% or more of its visible characters are private-use, replacement or control characters, or
- its letters come from 4 or more scripts besides Latin and Greek (each with at least 2 letters).
"""

from __future__ import annotations

import unicodedata
from collections import Counter

MAX_BAD_SHARE = 0.10  # of visible characters: private-use, U+FFFD or control characters
MAX_SCRIPTS = 3  # scripts besides Latin and Greek that one real page may mix
MIN_LETTERS = 2  # letters of a script needed before it counts (a stray symbol does not)

# Scripts every text borrows from (names, units, formulas): never counted.
_NEUTRAL = frozenset({"LATIN", "GREEK", "FULLWIDTH", "MATHEMATICAL", "MODIFIER", "SMALL"})
# First words of Unicode character names that belong to one writing system.
_FAMILY = {
    "CJK": "CJK",
    "IDEOGRAPHIC": "CJK",
    "KANGXI": "CJK",
    "HIRAGANA": "CJK",
    "KATAKANA": "CJK",
    "HALFWIDTH": "CJK",
    "HANGUL": "CJK",
    "BOPOMOFO": "CJK",
}


def _is_bad(char: str) -> str | None:
    code = ord(char)
    if 0xE000 <= code <= 0xF8FF or code >= 0xF0000:
        return "private-use characters"
    if char == "\ufffd":
        return "replacement characters"
    if unicodedata.category(char) == "Cc" and char not in "\t\n\r\f":
        return "control characters"
    return None


def _script(char: str) -> str | None:
    """The writing system of a letter, from the first word of its Unicode name (None: neutral)."""
    name = unicodedata.name(char, "")
    first = name.split(" ", 1)[0]
    if not first or first in _NEUTRAL:
        return None
    return _FAMILY.get(first, first)


def garbled(text: str) -> str | None:
    """Why `text` is mojibake ("private-use characters", "letters from 12 scripts: ..."), or None."""
    visible = [char for char in text if not char.isspace()]
    if not visible:
        return None
    bad = Counter(reason for char in visible if (reason := _is_bad(char)))
    if bad:
        reason, _ = bad.most_common(1)[0]
        if bad.total() >= MAX_BAD_SHARE * len(visible):
            return reason
    scripts = Counter(script for char in visible if char.isalpha() and (script := _script(char)))
    mixed = [
        script.title() if script != "CJK" else script
        for script, count in scripts.most_common()
        if count >= MIN_LETTERS
    ]
    if len(mixed) > MAX_SCRIPTS:
        shown = ", ".join(mixed[:4]) + (", ..." if len(mixed) > 4 else "")
        return f"letters from {len(mixed)} unrelated scripts: {shown}"
    return None
