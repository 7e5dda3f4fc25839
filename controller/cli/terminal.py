"""What every ``autogolf`` command shares: the console, timestamped progress lines, loading a campaign
file, and the one place a fault of autogolf's own (:class:`autogolf.errors.GolfError`) becomes a clean
exit: :class:`GolfCommands`, the command group of the ``autogolf`` app."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from autogolf.errors import GolfError

LOG_WIDTH = 200
ERROR_EXIT_CODE = 2


def _console(*, stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Off a terminal (the log of an overnight run, a pipe) rich assumes 80 columns and squeezes the
        # leaderboard's numbers into ellipses; a log file has room for whole rows.
        console = Console(stderr=stderr, width=LOG_WIDTH)
    return console


console = _console()
# Errors go to stderr, so `--json` output on stdout stays parseable when a command fails.
error_console = _console(stderr=True)


def fail(exc: BaseException) -> typer.Exit:
    """Print a fault as ``error: <message>`` and ``hint: <hint>`` and return the exit to raise."""
    message, hint = (exc.message, exc.hint) if isinstance(exc, GolfError) else (str(exc), "")
    error_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if hint:
        error_console.print(f"[bold]hint:[/] {escape(hint)}", highlight=False, soft_wrap=True)
    return typer.Exit(code=ERROR_EXIT_CODE)


class GolfCommands(TyperGroup):
    """The ``autogolf`` command group. Every command runs inside :meth:`invoke`, so this is the one
    handler of autogolf's own faults: a :class:`GolfError` from any command (sandbox, git, study,
    config, LLM endpoint or key, bad data) prints its message and hint and exits with status 2.
    Anything else is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GolfError as exc:
            raise fail(exc) from exc


def load(campaign: Path):  # -> CampaignConfig (imported lazily: `autogolf --help` stays fast)
    from controller.config import load_campaign

    return load_campaign(campaign)


def say(line: str) -> None:
    """Print a progress line as written: "[proxy]" or an LLM's "[x]" is text, not rich markup."""
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(line)}", highlight=False, soft_wrap=True)
