"""An answer's tokens as the LLM writes them: a live Markdown view on a terminal, JSON lines with
`--stream-json`, nothing when piped (the checked answer is written whole afterwards)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cli.output import Output
    from core.results import Answer


class AnswerStream:
    """Receives an answer's tokens as the LLM writes them."""

    def __init__(self, output: Output, *, stream_json: bool) -> None:
        self.output = output
        self.stream_json = stream_json
        self.streamed = False  # whether the answer text was already shown
        self._text = ""
        self._thinking = ""
        self._live: Any = None

    def on_event(self, kind: str, text: str) -> None:
        """A token (or a piece of reasoning) arrived."""
        if self.stream_json:
            self.streamed = True
            self.output.json({"type": kind, "text": text})
            return
        if not self.output.fancy:
            return  # piped: the whole answer is written once it is checked
        if kind == "token":
            self._text += text
        else:
            self._thinking += text
        if self._live is None:
            from rich.live import Live

            self._live = Live(
                self._view(),
                console=self.output.out,
                refresh_per_second=12,
                vertical_overflow="visible",
            )
            self._live.start()
            self.streamed = True
        self._live.update(self._view())

    def finish(self, answer: Answer) -> None:
        """Show the checked answer (invalid citations removed) in place of the raw stream."""
        if self._live is not None:
            self._text = answer.answer
            self._live.update(self._view(), refresh=True)

    def close(self) -> None:
        """Stop the live view (also when generation failed midway)."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _view(self) -> Any:
        from rich.console import Group
        from rich.markdown import Markdown
        from rich.text import Text

        parts: list[Any] = []
        if self._thinking:
            parts.append(Text(self._thinking.strip(), style="dim italic"))
        parts.append(Markdown(self._text))
        return Group(*parts)
