"""`kb chat`: the read–answer loop. A prompt with history on a terminal; one question per line otherwise."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.errors import exit_code_for
from cli.options import (
    ConfigOpt,
    JsonOpt,
    KbOpt,
    ModeOpt,
    ShowThinkingOpt,
    TopKOpt,
    TraceOpt,
    load,
)
from cli.output import Output
from cli.render import trace_line

if TYPE_CHECKING:
    from core.chat import ChatSession, ChatStore
    from core.config import Settings
    from core.errors import KbError

HELP = """\
Ask anything; follow-up questions are rewritten to stand on their own.
  /sources         the last answer's sources in full
  /retrieve        the chunks behind the last answer, with their text
  /why             how the last question was asked of the knowledge base
  /mode MODE       hybrid | dense | sparse
  /kb NAME         switch to another knowledge base
  /clear           forget the conversation
  /save [FILE]     write the conversation as Markdown (default: SESSION.md)
  /exit            leave (or Ctrl-D); Ctrl-C cancels an answer being written
Enter sends; Esc then Enter (or Alt+Enter) starts a new line."""


def chat_command(
    session_name: Annotated[
        str | None,
        typer.Option("--session", help="Use (or create) the session NAME.", metavar="NAME"),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the most recent session.")
    ] = False,
    list_sessions: Annotated[
        bool, typer.Option("--list", help="List the saved sessions and exit.")
    ] = False,
    mode: ModeOpt = None,
    top_k: TopKOpt = None,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Show how each question was rewritten."),
    ] = False,
    show_thinking: ShowThinkingOpt = False,
    config: ConfigOpt = None,
    kb: KbOpt = None,
    as_json: JsonOpt = False,
    trace: TraceOpt = False,
) -> None:
    """Chat with the knowledge base: follow-ups keep their context, sessions are saved.

    Not on a terminal, reads one question per line from stdin (JSON lines with --json).

    Example: printf 'What port does it use?\\nAnd how do I change it?\\n' | kb chat --json
    """
    from core.chat import ChatStore

    loaded = load(config, kb, retrieval={"mode": mode, "top_k": top_k})
    settings = loaded.settings
    out = Output(as_json=as_json)
    store = ChatStore.for_settings(settings)
    try:
        if list_sessions:
            out.chat_sessions(list(store.sessions()))
            return
        session = store.open(session_name, settings.kb.name, resume=resume)
        if kb is not None:
            session.kb = kb  # an explicit --kb beats the session's own
        if mode is not None or not session.turns:
            session.mode = settings.retrieval.mode
        loop = ChatLoop(
            settings, session, store, out, verbose=verbose, thinking=show_thinking, trace=trace
        )
        if sys.stdin.isatty():
            loop.interactive()
        else:
            loop.scripted(sys.stdin)
    finally:
        store.close()
    if loop.failed is not None:
        # A script learns that a turn failed (busy, endpoint down, ...) from the exit code.
        raise typer.Exit(exit_code_for(loop.failed))


class ChatLoop:
    """Turns questions and slash commands into answers; keeps the session alive across errors."""

    def __init__(
        self,
        settings: Settings,
        session: ChatSession,
        store: ChatStore,
        out: Output,
        *,
        verbose: bool,
        thinking: bool,
        trace: bool = False,
    ) -> None:
        self.settings = settings
        self.trace = trace
        self.session = session
        self.store = store
        self.out = out
        self.verbose = verbose
        self.thinking = thinking
        self.failed: KbError | None = None  # the last failed turn of a scripted session

    # -- the two front ends ------------------------------------------------------------------

    def interactive(self) -> None:
        """A prompt with persistent history and multi-line input; Ctrl-C cancels, Ctrl-D leaves."""
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory
        from prompt_toolkit.key_binding import KeyBindings

        from core.chat import history_path

        bindings = KeyBindings()

        @bindings.add("escape", "enter")
        def _newline(event: Any) -> None:
            event.current_buffer.insert_text("\n")

        prompt: PromptSession[str] = PromptSession(
            history=FileHistory(str(history_path(self.settings))), key_bindings=bindings
        )
        resumed = f", {len(self.session.turns)} earlier turns" if self.session.turns else ""
        self.out.note(
            f"kb chat · session {self.session.name}{resumed} · knowledge base "
            f"'{self.session.kb}' · /help for commands"
        )
        while True:
            try:
                line = prompt.prompt(f"{self.session.kb}> ")
            except KeyboardInterrupt:
                continue
            except EOFError:
                return
            if not self.handle(line):
                return

    def scripted(self, lines: Any) -> None:
        """One question (or slash command) per input line, answers in order. A failed turn is
        reported and the session goes on; the exit code then says so."""
        for line in lines:
            if not self.handle(line.rstrip("\n")):
                return

    # -- one input -----------------------------------------------------------------------------

    def handle(self, line: str) -> bool:
        """Answer a question or run a command; False means leave."""
        text = line.strip()
        if not text:
            return True
        if text.startswith("/"):
            return self.command(text)
        self.turn(text)
        return True

    def turn(self, question: str) -> None:
        from core.engine import open_engine
        from core.errors import KbError
        from core.last_answer import save_sources

        settings = self._settings()
        try:
            with (
                open_engine(settings, purpose="read") as engine,
                self.out.answer_stream(None) as stream,
            ):
                turn = self.session.ask(
                    question,
                    engine,
                    top_k=settings.retrieval.top_k,
                    on_event=stream.on_event,
                    show_thinking=self.thinking,
                )
                stream.finish(turn.answer)
        except KbError as err:
            self.out.turn_error(question, err)
            self.failed = err
            return
        except KeyboardInterrupt:
            self.out.note("(cancelled)")
            return
        self.store.save_turn(self.session, turn)
        save_sources(settings, turn.answer.sources)  # for `kb open N`
        if self.trace:
            self.out.note(trace_line(turn.answer.timings, turn.answer.usage))
        if self.verbose and turn.standalone != question:
            self.out.note(f"asked as: {turn.standalone}")
        self.out.chat_answer(turn, streamed=stream.streamed)

    def command(self, text: str) -> bool:
        name, _, argument = text.partition(" ")
        argument = argument.strip()
        last = self.session.turns[-1] if self.session.turns else None
        match name:
            case "/exit" | "/quit":
                return False
            case "/help":
                self.out.note(HELP)
            case "/sources" | "/retrieve":
                if last is None:
                    self.out.note("no answer yet")
                else:
                    self.out.chunks(last.answer.sources, full_text=name == "/retrieve")
            case "/why":
                if last is None:
                    self.out.note("no question yet")
                else:
                    how = {
                        "llm": "rewritten by the LLM",
                        "rule": "a follow-up: asked with the previous question",
                    }
                    self.out.note(
                        f"asked as: {last.standalone} ({how.get(last.rewritten_by, 'as typed')}); "
                        f"{last.answer.mode} retrieval"
                    )
            case "/clear":
                self.session.clear()
                self.store.clear(self.session)
                self.out.note("conversation cleared")
            case "/mode":
                if argument not in ("hybrid", "dense", "sparse"):
                    self.out.note("usage: /mode hybrid|dense|sparse")
                else:
                    self.session.mode = argument  # type: ignore[assignment]
                    self.store.save_settings(self.session)
                    self.out.note(f"retrieval mode: {argument}")
            case "/kb":
                if not argument:
                    self.out.note(f"knowledge base: {self.session.kb} (usage: /kb NAME)")
                else:
                    self.session.kb = argument
                    self.store.save_settings(self.session)
                    self.out.note(f"knowledge base: {argument}")
            case "/save":
                from core.chat import transcript

                target = Path(argument or f"{self.session.name}.md").expanduser()
                try:
                    target.write_text(transcript(self.session), encoding="utf-8")
                except OSError as err:
                    self.out.note(f"cannot write {target}: {err.strerror or err}")
                else:
                    self.out.note(f"saved {len(self.session.turns)} turns to {target}")
            case _:
                self.out.note(f"unknown command {name}; /help lists them")
        return True

    def _settings(self) -> Settings:
        """The command's settings, with the session's knowledge base and mode."""
        kb = self.settings.kb.model_copy(update={"name": self.session.kb})
        retrieval = self.settings.retrieval.model_copy(update={"mode": self.session.mode})
        return self.settings.model_copy(update={"kb": kb, "retrieval": retrieval})
