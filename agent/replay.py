"""The replay proposer: proposals read from a JSONL file, in order, through the real parse/apply path.

One JSON object per line (blank lines are skipped)::

    {"reply": "<hypothesis>...</hypothesis> ... <edit path=\\"train_gpt.py\\"> ... </edit>"}
    {"replies": ["<first try>", "<a repair, used only if the first try is rejected>"]}
    {"reply": "...", "knobs": {"MATRIX_LR": "0.03"}}
    {"hypothesis": "Lower the matrix learning rate", "knobs": {"MATRIX_LR": "0.03"}}

``reply`` is exactly what a model would answer; ``replies`` lets one line hold repair turns (each
is tried against the parent in turn, as an LLM's repairs would be). ``knobs`` sets exact knob
values; a line with ``hypothesis`` and ``knobs`` but no reply is a knob-only proposal.

A line applies to whichever parent the controller picked, as an LLM's reply would: it cannot name its
parent. The ``parent`` and ``hypothesis_id`` keys of earlier replay files are refused by name
(:func:`read_replay_file`), never silently ignored.

Position: lines are consumed in order; the index of the next line is :attr:`ReplayProposer.position`.
When ``cursor_path`` is given the position is read from it at start and rewritten after every
consumed line, so a resumed campaign does not replay a line twice. A line is consumed when
``propose`` is called for it, whether it yields a proposal or a give-up.

Shared replay: several processes (``autogolf worker``) can replay one file so that each line is served
once in all. Each is given ``claim``, called with a line's 1-based entry number before that line is
served; it must be atomic across the processes (controller.workers.remote pushes a create-only git ref)
and say False when another process owns the line, which is then skipped. Like the cursor, a claim is
taken when the line is consumed: a process killed between consuming a line and running it loses that
line, as a single controller killed while proposing does.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from agent.errors import AgentConfigError, ProposalError, ProposerExhausted
from agent.proposal import GiveUp, Proposal, ProposalContext, ProposerKind, TokenUsage
from agent.proposer_base import Proposer
from agent.realize import CheckProgram, parent_knob_names, realize_reply


class ReplayEntry(BaseModel):
    """One line of a replay file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reply: str | None = None
    replies: tuple[str, ...] = ()
    hypothesis: str | None = None  # only for knob-only lines
    rationale: str = ""
    knobs: dict[str, str] = {}

    @model_validator(mode="after")
    def _check(self) -> ReplayEntry:
        if self.reply is not None and self.replies:
            raise ValueError("give either 'reply' or 'replies', not both")
        if self.reply is None and not self.replies and not (self.hypothesis and self.knobs):
            raise ValueError("needs 'reply', 'replies', or 'hypothesis' with 'knobs' (a knob-only line)")
        return self

    @property
    def turns(self) -> tuple[str, ...]:
        return (self.reply,) if self.reply is not None else self.replies


# Keys that replay files once carried into the Proposal and nothing ever read: a line that sets one
# expects an effect it would not get, so it is refused with the reason and the way to get the effect.
_RETIRED_KEYS = {
    "parent": (
        "a replay line cannot choose its parent; the controller picks the parent of every proposal",
        "remove it; to build an idea on a given trial, queue it with "
        "`autogolf hypothesis add <campaign> TEXT --parent N`",
    ),
    "hypothesis_id": (
        "a replay line cannot claim a queued hypothesis; a trial is linked to a queued idea by the "
        "request it implements",
        "remove it; queue the idea with `autogolf hypothesis add` to have it tracked",
    ),
}


def read_replay_file(path: Path) -> list[ReplayEntry]:
    """All entries of ``path``. Raises :class:`AgentConfigError` naming the file and the line for one
    that is not JSON, does not fit :class:`ReplayEntry`, or sets a retired key (``parent``,
    ``hypothesis_id``)."""
    if not path.is_file():
        raise AgentConfigError(
            f"replay file {path} does not exist", hint="check the replay path in the campaign"
        )
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            for key, (why, fix) in _RETIRED_KEYS.items():
                if isinstance(data, dict) and key in data:
                    raise AgentConfigError(f"{path}:{number}: key {key!r} is not supported: {why}", hint=fix)
            entries.append(ReplayEntry.model_validate(data))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise AgentConfigError(
                f"{path}:{number}: not a valid replay line: {exc}",
                hint='each line is one JSON object such as {"reply": "<hypothesis>...</hypothesis>..."}',
            ) from exc
    return entries


class ReplayProposer(Proposer):
    """Serves the lines of a JSONL file in order; raises :class:`ProposerExhausted` after the last."""

    name = ProposerKind.REPLAY

    def __init__(
        self, path: Path, *, cursor_path: Path | None = None, claim: Callable[[int], bool] | None = None
    ) -> None:
        self.path = path
        self.entries = read_replay_file(path)
        self.cursor_path = cursor_path
        self.claim = claim  # shared replay (module docstring); None: every line is this process's
        self._lock = threading.Lock()
        self._position = 0
        if cursor_path is not None and cursor_path.exists():
            text = cursor_path.read_text(encoding="utf-8").strip()
            if not text.isdigit():
                raise AgentConfigError(
                    f"replay cursor {cursor_path} holds {text!r}, not a line index",
                    hint="delete it to start the replay from the first line",
                )
            self._position = int(text)

    @property
    def position(self) -> int:
        return self._position

    @property
    def remaining(self) -> int:
        return max(0, len(self.entries) - self._position)

    def propose(self, context: ProposalContext, check_program: CheckProgram) -> Proposal | GiveUp:
        number, entry = self._consume()
        if not entry.turns:
            return Proposal(
                hypothesis=entry.hypothesis or "",
                rationale=entry.rationale,
                files={},
                proposer=ProposerKind.REPLAY,
                turns=0,
                knob_values=entry.knobs,
            )
        parent_knobs = parent_knob_names(context, check_program)
        last_error = ""
        for turn, reply in enumerate(entry.turns, start=1):
            try:
                realized = realize_reply(reply, context, check_program, parent_knobs)
            except ProposalError as exc:
                last_error = str(exc)
                continue
            return realized.to_proposal(
                proposer=ProposerKind.REPLAY, usage=TokenUsage(), turns=turn, knob_values=entry.knobs
            )
        return GiveUp(
            reason=f"replay entry {number} of {self.path}: every reply was rejected; the last: {last_error}",
            turns=len(entry.turns),
            transcript=entry.turns,
        )

    def _consume(self) -> tuple[int, ReplayEntry]:
        """The next entry this process may serve and its 1-based number; the cursor file already
        points past it (and past the entries other processes claimed)."""
        with self._lock:
            while self._position < len(self.entries):
                number = self._position + 1
                # A claim that raises (remote unreachable) leaves the position where it was: retried.
                mine = self.claim is None or self.claim(number)
                self._position = number
                self._save_cursor()
                if mine:
                    return number, self.entries[number - 1]
            raise ProposerExhausted(
                f"replay file {self.path} is used up ({len(self.entries)} lines)",
                hint="add lines to the file, or switch the campaign to another proposer",
            )

    def _save_cursor(self) -> None:
        if self.cursor_path is None:
            return
        # Write-then-rename so a crash never leaves a half-written cursor.
        temporary = self.cursor_path.with_suffix(self.cursor_path.suffix + ".tmp")
        temporary.write_text(f"{self._position}\n", encoding="utf-8")
        os.replace(temporary, self.cursor_path)
