"""`kb chat`: a conversation over one knowledge base, remembered in SQLite.

Every question is first made standalone, so retrieval never sees "what about its license?":

- with an LLM, the model rewrites it from the recent conversation (`prompts.CONDENSE_*`);
- offline, a deterministic rule: a question that leans on a pronoun ("it", "they", "它", "这个")
  without naming enough of its own, or that opens like a continuation ("and", "what about", "那",
  "还有"…) or is short and names at most one thing of its own, is asked together with the topic of
  the conversation: the last question that stood on its own (never a rewritten one, so topics do
  not nest). A question that names two or more things of its own is its own topic.

The rewritten question is kept with the turn (`/why` shows it). The history the LLM sees is trimmed to
a token budget, newest turns kept. Sessions and their turns live in `<kb home>/chat.sqlite3`; a turn
is written once it is answered, so a crash or kill loses at most the turn in progress.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from core.answer import OnEvent, answer
from core.config import Settings, kb_home
from core.engine import Engine
from core.prompts import condense_messages
from core.results import Answer, Source
from core.retrieve import Mode, RetrievalQuery, retrieve
from core.text import approx_tokens, tokenize

HISTORY_TOKENS = 1500  # conversation the rewriting LLM sees, newest first
SHORT_FOLLOW_UP = 6  # words (or Chinese characters / 2) under which a question leans on context
_OPENERS = re.compile(
    r"^\s*(and|but|also|so|then|what about|how about|and what|why not|what else)\b"
    r"|^\s*(那|那么|还有|另外|而且|并且|那个|它的|他们的|这个|那它)",
    re.IGNORECASE,
)
_PRONOUNS = re.compile(
    r"\b(it|its|it's|they|them|their|this|that|these|those|he|she|his|her|one|ones)\b"
    r"|[它他她其该此这那]",
    re.IGNORECASE,
)
_CJK = re.compile(r"[\u3400-\u9fff]")
# Words that ask rather than name: not counted as a question's own content.
_ASKING = frozenset(
    [
        "的",
        "了",
        "是",
        "吗",
        "呢",
        "吧",
        "啊",
        "么",
        "什么",
        "怎么",
        "怎样",
        "怎么样",
        "如何",
        "多少",
        "几",
        "哪",
        "哪些",
        "哪个",
        "哪里",
        "为什么",
        "为何",
        "有",
        "没有",
        "还有",
        "别的",
        "其他",
        "其它",
        "需要",
        "可以",
        "能",
        "能否",
        "应该",
        "要",
        "会",
        "和",
        "与",
        "及",
        "在",
        "那",
        "那么",
        "这",
        "这个",
        "那个",
        "它",
        "它的",
        "他",
        "她",
        "他们",
        "其",
        "该",
        "此",
        "一个",
        "请问",
        "还",
        "又",
        "也",
        "都",
        "就",
        "吧",
        "呀",
        "怎么办",
        "多久",
        "另外",
        "而且",
        "并且",
        "个",
        "also",
        "els",
        "tell",
        "explain",
        "mean",
        "happen",
        "instead",
        "one",
        "exampl",
        "detail",
        "thing",
        "way",
    ]
)


@dataclass(frozen=True)
class Turn:
    """One question and its answer."""

    question: str
    standalone: str  # what was retrieved for: the question rewritten to stand on its own
    answer: Answer
    rewritten_by: str  # "llm", "rule" or "" (the question already stood alone)


@dataclass
class ChatSession:
    """A conversation's memory and settings; `ask` answers the next question."""

    id: int
    name: str
    kb: str
    mode: Mode = "hybrid"
    turns: list[Turn] = field(default_factory=list)

    def ask(
        self,
        question: str,
        engine: Engine,
        *,
        top_k: int,
        on_event: OnEvent | None = None,
        show_thinking: bool = False,
    ) -> Turn:
        """Rewrite `question` to stand alone, retrieve, answer; the turn joins the history."""
        standalone, how = self.standalone(question, engine)
        query = RetrievalQuery.from_settings(
            engine.settings, standalone, mode=self.mode, top_k=top_k
        )
        retrieval = retrieve(query, engine)
        engine.release()  # answering needs no store: `kb ingest` need not wait for the LLM
        # "那内存需要多少？" asks of its own subject (the topic only places it): its answer should
        # name it. "How do I change it?" asks of the topic's: the topic's words answer it.
        asked = question if how == "rule" and not leans_on_pronoun(question) else None
        result = answer(
            retrieval, engine, on_event=on_event, show_thinking=show_thinking, asked=asked
        )
        turn = Turn(question, standalone, replace(result, question=question), how)
        self.turns.append(turn)
        return turn

    def standalone(self, question: str, engine: Engine) -> tuple[str, str]:
        """The question rewritten from the conversation, and by what ("llm", "rule" or "")."""
        if not self.turns:
            return question, ""
        llm = engine.llm
        if llm is not None:
            from llama_index.core.llms import ChatMessage

            history = [(t.question, t.answer.answer) for t in self.turns]
            messages = [
                ChatMessage(role=role, content=content)
                for role, content in condense_messages(
                    trim_history(history, HISTORY_TOKENS), question
                )
            ]
            rewritten = (llm.chat(messages).message.content or "").strip()
            rewritten = rewritten.splitlines()[0].strip() if rewritten else ""
            return (rewritten, "llm") if rewritten else (question, "")
        if looks_like_follow_up(question):
            return f"{question} ({topic(self.turns[-1])})", "rule"
        return question, ""

    def clear(self) -> None:
        """Forget the conversation (the saved turns stay in the session's file)."""
        self.turns.clear()


def leans_on_pronoun(question: str) -> bool:
    """Whether the question refers back with a pronoun ("it", "它"); an opening "那" opens, it
    does not refer."""
    opens = _OPENERS.search(question)
    return _PRONOUNS.search(question[opens.end() :] if opens else question) is not None


def looks_like_follow_up(question: str) -> bool:
    """Leaning on a pronoun and naming fewer than three things of its own; or short, or opening
    like a continuation, and naming at most one."""
    own = len(content_words(question))
    opens = _OPENERS.search(question)
    if leans_on_pronoun(question):
        return own < 3
    words = len(question.split()) + len(_CJK.findall(question)) // 2
    return (words < SHORT_FOLLOW_UP or opens is not None) and own < 2


def content_words(question: str) -> set[str]:
    """The keyword tokens of a question that name something (not question words or pronouns)."""
    return {t for t in tokenize(question) if t not in _ASKING}


def topic(turn: Turn) -> str:
    """What a turn was about: its question when it stood alone (or the LLM's rewrite), else the
    topic it was asked with."""
    if turn.rewritten_by == "rule":
        prefix = f"{turn.question} ("
        if turn.standalone.startswith(prefix) and turn.standalone.endswith(")"):
            return turn.standalone[len(prefix) : -1]
    return turn.standalone


def trim_history(history: list[tuple[str, str]], budget: int) -> list[tuple[str, str]]:
    """The newest (question, answer) pairs that fit in `budget` tokens (at least the last one)."""
    kept: list[tuple[str, str]] = []
    used = 0
    for question, reply in reversed(history):
        cost = approx_tokens(question) + approx_tokens(reply)
        if kept and used + cost > budget:
            break
        kept.append((question, reply))
        used += cost
    return list(reversed(kept))


def transcript(session: ChatSession) -> str:
    """The conversation as Markdown: questions, answers with [n], and each answer's sources."""
    lines = [f"# kb chat: {session.name}", "", f"Knowledge base: `{session.kb}`", ""]
    for number, turn in enumerate(session.turns, 1):
        lines += [f"## {number}. {turn.question}", ""]
        if turn.standalone != turn.question:
            lines += [f"*Asked as:* {turn.standalone}", ""]
        lines += [turn.answer.answer, ""]
        if turn.answer.supporting:
            lines += ["Supporting passages:", "", turn.answer.supporting, ""]
        for source in turn.answer.sources:
            where = f"{source.path}" + (
                f", p. {source.page}"
                if source.page
                else f", {source.location}"
                if source.location
                else ""
            )
            if source.line_start:
                where += f", lines {source.line_start}-{source.line_end}"
            lines.append(f"- [{source.n}] {where}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# -------------------------------------------------------------------------------- persistence


def history_path(settings: Settings) -> Path:
    """Where the interactive prompt keeps its input history (created readable by its owner only)."""
    path = kb_home(settings.kb.home) / "chat-input-history"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600)
    return path


class ChatStore:
    """Sessions and their turns in one SQLite file."""

    @classmethod
    def for_settings(cls, settings: Settings) -> ChatStore:
        """The sessions file in the knowledge bases' home."""
        return cls(kb_home(settings.kb.home) / "chat.sqlite3")

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(path, timeout=5.0)
        path.chmod(0o600)
        self._db.executescript(
            """
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS sessions (
                id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, kb TEXT NOT NULL,
                mode TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS turns (
                session INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
                number INTEGER NOT NULL, turn TEXT NOT NULL, created REAL NOT NULL,
                PRIMARY KEY (session, number));
            """
        )

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def open(self, name: str | None, kb: str, *, resume: bool) -> ChatSession:
        """Session `name` (created if new), or with `resume` the last used one, else a new one."""
        row = None
        if name is not None:
            row = self._db.execute(
                "SELECT id, name, kb, mode FROM sessions WHERE name = ?", (name,)
            ).fetchone()
        elif resume:
            row = self._db.execute(
                "SELECT id, name, kb, mode FROM sessions ORDER BY updated DESC LIMIT 1"
            ).fetchone()
        if row is None:
            now = time.time()
            name = name or time.strftime("chat-%Y%m%d-%H%M%S", time.localtime(now))
            with self._db:
                cursor = self._db.execute(
                    "INSERT INTO sessions (name, kb, mode, created, updated) VALUES (?, ?, ?, ?, ?)",
                    (name, kb, "hybrid", now, now),
                )
            return ChatSession(int(cursor.lastrowid or 0), name, kb)
        session = ChatSession(int(row[0]), str(row[1]), str(row[2]), row[3])
        for (raw,) in self._db.execute(
            "SELECT turn FROM turns WHERE session = ? ORDER BY number", (session.id,)
        ):
            session.turns.append(_turn_from(json.loads(raw)))
        return session

    def save_turn(self, session: ChatSession, turn: Turn) -> None:
        """Write a finished turn (and the session's kb and mode) in one transaction."""
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO turns (session, number, turn, created) VALUES (?, ?, ?, ?)",
                (
                    session.id,
                    len(session.turns),
                    json.dumps(asdict(turn), ensure_ascii=False),
                    time.time(),
                ),
            )
            self._touch(session)

    def save_settings(self, session: ChatSession) -> None:
        """Remember a changed knowledge base or mode."""
        with self._db:
            self._touch(session)

    def clear(self, session: ChatSession) -> None:
        """Drop the session's turns."""
        with self._db:
            self._db.execute("DELETE FROM turns WHERE session = ?", (session.id,))
            self._touch(session)

    def sessions(self) -> Iterator[tuple[str, str, int, float]]:
        """(name, kb, turns, last used) of every session, most recent first."""
        with closing(
            self._db.execute(
                "SELECT s.name, s.kb, COUNT(t.number), s.updated FROM sessions s "
                "LEFT JOIN turns t ON t.session = s.id GROUP BY s.id ORDER BY s.updated DESC"
            )
        ) as cursor:
            for name, kb, count, updated in cursor:
                yield str(name), str(kb), int(count), float(updated)

    def _touch(self, session: ChatSession) -> None:
        self._db.execute(
            "UPDATE sessions SET kb = ?, mode = ?, updated = ? WHERE id = ?",
            (session.kb, session.mode, time.time(), session.id),
        )


def _turn_from(data: dict[str, object]) -> Turn:
    raw = dict(data["answer"])  # type: ignore[call-overload]
    raw["sources"] = tuple(
        Source(**{**s, "headings": tuple(s["headings"])}) for s in raw["sources"]
    )
    for key in ("citations", "invalid_citations"):
        raw[key] = tuple(raw.get(key, ()))
    return Turn(
        question=str(data["question"]),
        standalone=str(data["standalone"]),
        answer=Answer(**raw),
        rewritten_by=str(data.get("rewritten_by", "")),
    )
