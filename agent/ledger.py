"""A record of every chat call: tokens, cost, latency and outcome, one JSON line each.

The ledger is the campaign's bill. It appends as it goes (so a crash loses at most the call in
flight) and :meth:`Ledger.load` rebuilds the running totals from the file on resume.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from agent.proposal import TokenUsage

log = logging.getLogger(__name__)


class LedgerEntry(BaseModel):
    """One chat call. Failed attempts are recorded too, with zero tokens and their outcome."""

    model_config = ConfigDict(frozen=True)

    time: str  # ISO 8601, UTC
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_seconds: float = 0.0
    # ok | rate_limited | timeout | connection_error | server_error | bad_response | rejected
    outcome: str
    purpose: str = ""  # propose | repair
    attempt: int = 1  # 1-based attempt number within one chat call
    detail: str = ""  # the error, for failed attempts

    @property
    def usage(self) -> TokenUsage:
        return TokenUsage(
            prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens, cost_usd=self.cost_usd
        )


class Ledger:
    """Appends :class:`LedgerEntry` lines to ``path`` (or keeps them in memory when ``path`` is None).

    Thread-safe: proposals are prepared in a background thread while a candidate trains.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: list[LedgerEntry] = []
        self._totals = TokenUsage()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    @classmethod
    def load(cls, path: Path) -> Ledger:
        """A ledger that continues ``path``: existing lines count towards the totals.

        A line that does not parse (a crash mid-write) is skipped with a warning, not fatal.
        """
        ledger = cls(path)
        if not path.exists():
            return ledger
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = LedgerEntry.model_validate_json(line)
            except ValidationError as exc:
                log.warning(
                    "%s:%d: skipping unreadable ledger line (%s)", path, number, exc.errors()[0]["msg"]
                )
                continue
            ledger._entries.append(entry)
            ledger._totals = ledger._totals + entry.usage
        return ledger

    def record(
        self,
        *,
        model: str,
        outcome: str,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost_usd: float = 0.0,
        latency_seconds: float = 0.0,
        purpose: str = "",
        attempt: int = 1,
        detail: str = "",
    ) -> LedgerEntry:
        entry = LedgerEntry(
            time=datetime.now(UTC).isoformat(timespec="milliseconds"),
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost_usd,
            latency_seconds=round(latency_seconds, 4),
            outcome=outcome,
            purpose=purpose,
            attempt=attempt,
            detail=detail[:500],
        )
        with self._lock:
            self._entries.append(entry)
            self._totals = self._totals + entry.usage
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(entry.model_dump(), ensure_ascii=False) + "\n")
        return entry

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        with self._lock:
            return tuple(self._entries)

    @property
    def totals(self) -> TokenUsage:
        with self._lock:
            return self._totals

    @property
    def total_cost_usd(self) -> float:
        return self.totals.cost_usd

    @property
    def prompt_tokens(self) -> int:
        return self.totals.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.totals.completion_tokens

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self._entries)
