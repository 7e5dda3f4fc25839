"""What the agent hands the controller: a :class:`Proposal` to turn a parent program into a candidate."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class EditKind(StrEnum):
    SEARCH_REPLACE = "search_replace"
    UNIFIED_DIFF = "unified_diff"


class Edit(BaseModel):
    """One parsed edit. ``path`` is relative to the program directory."""

    model_config = ConfigDict(frozen=True)

    path: str
    kind: EditKind
    search: str = ""  # SEARCH text (search_replace)
    replace: str = ""  # REPLACE text (search_replace)
    diff: str = ""  # the hunk text (unified_diff)


class TokenUsage(BaseModel):
    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
        )


class Proposal(BaseModel):
    """A well-formed change: edits already applied and checked, ready to become a candidate commit.

    ``files`` maps each changed path (relative to the program directory) to its full new text;
    an empty ``files`` means a knob-only proposal (the parent's code, new knob values).
    """

    model_config = ConfigDict(frozen=True)

    hypothesis: str  # one line: becomes the commit title
    rationale: str = ""  # becomes the commit body
    edits: tuple[Edit, ...] = ()
    files: dict[str, str] = Field(default_factory=dict)
    new_knobs: tuple[str, ...] = ()  # names added to the knob table
    # Non-empty when the edit changes what the program writes to a scored file (val_nll.f32,
    # check_rows.f32, result.json), saying where: the controller runs it with the full integrity probe.
    scoring_change: str = ""
    knob_values: dict[str, str] = Field(default_factory=dict)  # exact settings (enqueue, replay)
    usage: TokenUsage = Field(default_factory=TokenUsage)
    turns: int = 1  # conversation turns it took, repairs included
    proposer: str = "llm"  # llm | replay | knobs | hypothesis
    # Set by the replay proposer when its line names them; the controller should honour them.
    parent_trial: int | None = None
    hypothesis_id: str | None = None


class GiveUp(BaseModel):
    """The agent could not produce a valid proposal within its repair turns."""

    model_config = ConfigDict(frozen=True)

    reason: str
    turns: int
    usage: TokenUsage = Field(default_factory=TokenUsage)
    transcript: tuple[str, ...] = ()  # the replies, for the trial log


class Outcome(BaseModel):
    """A past attempt as the agent sees it: what was tried and how it went, in words and numbers."""

    model_config = ConfigDict(frozen=True)

    hypothesis: str
    status: str  # ok, crashed, timeout, ..., or "gave_up" / "preflight_failed"
    val_bpb: float | None = None
    delta_bpb: float | None = None  # vs its parent; negative is better
    note: str = ""  # short reason or detail


class ParentResult(BaseModel):
    """The parent's measured result, filled by the controller from the sandbox's RunResult."""

    model_config = ConfigDict(frozen=True)

    status: str
    val_bpb: float | None = None
    artifact_bytes: int | None = None
    artifact_limit_bytes: int = 16_000_000
    train_seconds: float | None = None
    eval_seconds: float | None = None
    curve_summary: str = ""  # e.g. "step 0 loss 6.93 · step 500 loss 3.80 · final 3.41"
    log_tail: str = ""  # only when it failed


class ProposalContext(BaseModel):
    """Everything the agent may use to propose a change to one parent program."""

    model_config = ConfigDict(frozen=True)

    operation: str = "mutate"  # mutate | hypothesis
    entry: str = "train_gpt.py"
    files: dict[str, str]  # the parent program: path -> full text (never trimmed)
    allowed_files: tuple[str, ...] = ("train_gpt.py",)
    parent: ParentResult | None = None
    lineage: tuple[Outcome, ...] = ()  # root first
    tried_from_parent: tuple[Outcome, ...] = ()
    inspirations: tuple[Outcome, ...] = ()
    human_hypothesis: str | None = None
    known_source_hashes: frozenset[str] = frozenset()  # normalized hashes of every program tried

    @property
    def editable_files(self) -> tuple[str, ...]:
        """The files an edit may touch: ``allowed_files``, and always the entry file."""
        if self.entry in self.allowed_files:
            return self.allowed_files
        return (self.entry, *self.allowed_files)
