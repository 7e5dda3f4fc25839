"""The research brief: what is known about the challenge, sent with every proposal request.

The built-in brief is ``prompts/brief.txt`` (the known techniques and their approximate effects). A
campaign steers its agent with a notes file of its own (``[agent] brief = "notes.md"``), the way
karpathy/autoresearch lets its user steer through a program file: with ``brief_mode = "extend"`` (the
default) the notes follow the built-in brief, with ``"replace"`` they are the whole brief. Both are
plain text, sent as written (no template placeholders, so a ``$`` in the notes is just a dollar).
"""

from __future__ import annotations

from pathlib import Path

from agent.errors import AgentConfigError
from agent.prompt import DEFAULT_PROMPTS_DIR
from agent.settings import AgentSettings

BRIEF_TEMPLATE = "brief.txt"
NOTES_HEADING = "## Notes from the campaign's owner"


def read_brief(settings: AgentSettings) -> str:
    """The brief for ``settings``: the built-in one from ``settings.prompts_dir`` (falling back to the
    repository's when that folder has none), the user's notes, or both.

    Raises :class:`AgentConfigError` naming the file when the notes file cannot be read."""
    notes = _read_notes(settings.brief) if settings.brief is not None else ""
    if settings.brief_mode == "replace" and settings.brief is not None:
        return notes
    builtin = _builtin(settings.prompts_dir or DEFAULT_PROMPTS_DIR)
    if not notes:
        return builtin
    return f"{builtin}\n\n{NOTES_HEADING}\n{notes}"


def _builtin(prompts_dir: Path) -> str:
    path = prompts_dir / BRIEF_TEMPLATE
    if not path.is_file():
        path = DEFAULT_PROMPTS_DIR / BRIEF_TEMPLATE
    return path.read_text(encoding="utf-8").strip()


def _read_notes(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentConfigError(
            f"the research brief {path} cannot be read: {exc}",
            hint="fix [agent] brief in the campaign file (a Markdown file, relative to the campaign "
            "file), or remove it to use the built-in brief alone",
        ) from exc
