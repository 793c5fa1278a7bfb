"""Subcommands imported on first use, so ``tether --help`` and ``tether dev svid`` start fast.

Each command group lives in its own module, and some of those modules import the server, the MCP
gateway, the policy engine or the store (seconds of imports). The root command knows each one by
name and a one-line summary only; the module is imported when that command is run, completed or
asked for its own ``--help`` (click's "lazily loading subcommands" pattern).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import typer
import typer.main

# Typer runs its own copy of click, not the click package: the stand-in must be one of its commands.
from typer import _click as click
from typer._click.exceptions import BadParameter
from typer.core import TyperCommand, TyperGroup

from tether.cli.exits import ExitCode


@dataclass(frozen=True)
class Subcommand:
    """A subcommand of the root: its name, ``module:attribute`` (a ``typer.Typer`` group or a
    command function), and the summary ``tether --help`` lists. ``logs`` false: it writes no
    log, so logging (structlog, a tenth of its start) is not set up for it."""

    name: str
    target: str
    summary: str
    logs: bool = True


class DeferredCommand(TyperCommand):
    """Stands in the root's command table for a subcommand whose module is not imported yet.

    Listing it (``tether --help``) needs only its name and summary; running it, completing it or
    showing its help loads the real command and hands the work over to it.
    """

    def __init__(self, sub: Subcommand) -> None:
        super().__init__(sub.name, short_help=sub.summary, help=sub.summary)
        self._target = sub.target
        self._real: click.Command | None = None

    def load(self) -> click.Command:
        if self._real is None:
            module_name, _, attribute = self._target.partition(":")
            obj = getattr(importlib.import_module(module_name), attribute)
            if isinstance(obj, typer.Typer):
                real: click.Command = typer.main.get_group(obj)
            else:  # one command function
                single = typer.Typer(add_completion=False)
                single.command(self.name)(obj)
                real = typer.main.get_command(single)
            real.name = self.name
            _plain_help(real)
            self._real = real
        return self._real

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        # The context names the real command, so click invokes it, not this stand-in.
        return self.load().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        return self.load().invoke(ctx)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return self.load().get_params(ctx)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        return self.load().shell_complete(ctx, incomplete)


def _plain_help(command: click.Command) -> None:
    """click's plain help for ``command`` and everything under it, as for the root (see there)."""
    if isinstance(command, TyperCommand | TyperGroup):
        command.rich_markup_mode = None
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            _plain_help(sub)


class LazyGroup(TyperGroup):
    """The root group: its subcommands come from :attr:`subcommands`, each imported on use."""

    subcommands: tuple[Subcommand, ...] = ()

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for sub in self.subcommands:
            self.add_command(DeferredCommand(sub))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BadParameter as error:
            # A path option or argument naming a file or directory that does not exist (Typer's
            # ``exists=True``): not found, as when a command finds it missing itself.
            if error.message.endswith(" does not exist."):
                error.exit_code = ExitCode.NOT_FOUND
            raise
