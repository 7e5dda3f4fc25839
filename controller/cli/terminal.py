"""What every ``autogolf`` command shares: the console, timestamped progress lines, loading a campaign
file, and turning a harness fault into a clean exit."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from agent.errors import AgentError
from datatools.shards import DataError
from sandbox.errors import HarnessError

LOG_WIDTH = 200

console = Console()
if not console.is_terminal and "COLUMNS" not in os.environ:
    # Off a terminal (the log of an overnight run, a pipe) rich assumes 80 columns and squeezes the
    # leaderboard's numbers into ellipses; a log file has room for whole rows.
    console = Console(width=LOG_WIDTH)

# Faults a command reports as one clean error line with its hint: the harness's own (sandbox, git, study,
# config), the agent's (LLM endpoint, key, settings) and bad data. Anything else is a bug: a traceback.
COMMAND_ERRORS = (HarnessError, AgentError, DataError)


def fail(exc: BaseException) -> typer.Exit:
    """Print a harness fault (its message carries the hint) and return the exit to raise."""
    console.print(f"[bold red]error:[/] {escape(str(exc))}")
    return typer.Exit(code=2)


def load(campaign: Path):  # -> CampaignConfig (imported lazily: `autogolf --help` stays fast)
    from controller.config import load_campaign

    return load_campaign(campaign)


def say(line: str) -> None:
    """Print a progress line as written: "[proxy]" or an LLM's "[x]" is text, not rich markup."""
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(line)}", highlight=False, soft_wrap=True)
