"""A command group with a default sub-command: `kb eval FILE` runs the default, `kb eval compare A B`
runs `compare`.

Click has no default sub-command (pallets/click#430, #1654); the usual answer, as in
click-default-group, is a group that puts the default's name in front of the arguments when their
first word names no sub-command. The default is hidden, and its help is the group's help.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    # typer vendors click; these base types are not re-exported
    from typer._click import Context, HelpFormatter


class DefaultCommandGroup(TyperGroup):
    """Arguments whose first word is not a sub-command's name go to the `DEFAULT` sub-command."""

    DEFAULT = "run"

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = [self.DEFAULT, *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        """The default command's help (usage, text, options), then the other sub-commands."""
        default = self.commands[self.DEFAULT]
        default.format_help(
            default.context_class(default, parent=ctx, info_name=self.DEFAULT), formatter
        )
        self.format_commands(ctx, formatter)

    def get_short_help_str(self, limit: int = 45) -> str:
        """The line under `kb --help`: the default command's."""
        return self.commands[self.DEFAULT].get_short_help_str(limit)


class _DefaultContext(typer.Context):
    """The default command's context: it is named like its group (`kb eval`, not `kb eval run`)."""

    @property
    def command_path(self) -> str:
        return self.parent.command_path if self.parent is not None else super().command_path


class DefaultCommand(TyperCommand):
    """The command a `DefaultCommandGroup` falls back to; register it under the group's `DEFAULT`."""

    context_class = _DefaultContext
