"""The ``autogolf`` command line: app.py (campaign and data commands), review.py (the commands that read
a campaign), terminal.py (printing and turning errors into exit codes)."""

from controller.cli.app import app, main

__all__ = ["app", "main"]
