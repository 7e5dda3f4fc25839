"""What the agent and the controller exchange: the :class:`ProposalContext` the agent is given, the
:class:`Proposal` (or :class:`GiveUp`) it hands back, and the closed sets they use (:class:`Operation`,
:class:`ProposerKind`, :class:`OutcomeStatus`).

``Operation`` is defined here, not in the controller that draws it, because the context carries it and
the agent may not import the controller; ``controller.store.archive`` re-exports it.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Operation(StrEnum):
    """How a candidate came to be."""

    SEED = "seed"  # the campaign's seed program, as given
    MUTATE = "mutate"  # the LLM edited the parent's code
    TUNE = "tune"  # Optuna sampled the parent's knobs; code unchanged
    HYPOTHESIS = "hypothesis"  # the LLM implemented a queued human idea
    CONFIRM = "confirm"  # the parent re-run with another seed
    STACK = "stack"  # one confirmed win's change replayed onto another's program (two parents)
    ABLATE = "ablate"  # a confirmed win re-run with one part of its change left out
    ADOPT = "adopt"  # a foreign program (a challenge record) ported to the run contract


class ProposerKind(StrEnum):
    """Who wrote a proposal; recorded with its trial."""

    LLM = "llm"  # a chat model changed the code (operation mutate)
    HYPOTHESIS = "hypothesis"  # a chat model implemented a queued human idea
    REPLAY = "replay"  # a line of a replay file
    KNOBS = "knobs"  # no code change: the sampler's knob values
    SEED = "seed"  # a program imported as a new root (``autogolf seed``)
    ENQUEUE = "enqueue"  # exact knob settings queued by a person (``autogolf enqueue``)
    ADOPT = "adopt"  # the deterministic port of an official-structure program (importer.adopt)
    STACK = "stack"  # git's three-way merge of two confirmed wins, no LLM (controller.search.stacking)
    ABLATE = "ablate"  # a win with one part of its change reverted, no LLM (controller.search.ablation)


class OutcomeStatus(StrEnum):
    """How an attempt the agent is told about ended: one of the sandbox's run statuses
    (``sandbox.spec.RunStatus``, repeated because the agent may not import the sandbox), or no run."""

    OK = "ok"
    CRASHED = "crashed"
    TIMEOUT = "timeout"
    OOM = "oom"
    OVER_SIZE = "over_size"
    INVALID = "invalid"
    PRUNED = "pruned"
    GAVE_UP = "gave_up"  # no usable proposal came, so nothing ran


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
    proposer: ProposerKind = ProposerKind.LLM


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
    status: OutcomeStatus
    val_bpb: float | None = None
    delta_bpb: float | None = None  # vs its parent; negative is better
    note: str = ""  # short reason or detail


class CurveSample(BaseModel):
    """One point of the parent's training loss, beside its own parent's at the same step (if logged)."""

    model_config = ConfigDict(frozen=True)

    step: int
    train_loss: float
    grandparent_loss: float | None = None


class ParentResult(BaseModel):
    """The parent's measured result, filled by the controller from the sandbox's RunResult."""

    model_config = ConfigDict(frozen=True)

    status: OutcomeStatus
    val_bpb: float | None = None
    artifact_bytes: int | None = None
    artifact_limit_bytes: int = 16_000_000
    train_seconds: float | None = None
    eval_seconds: float | None = None
    curve_summary: str = ""  # e.g. "step 0 loss 6.93 · step 500 loss 3.80 · final 3.41"
    log_tail: str = ""  # only when it failed
    # How training went, not only where it ended: the challenge trades model size against steps in a
    # fixed time, so a change that slows each step must earn back the steps it loses.
    train_budget_seconds: float | None = None  # the tier's training limit
    ms_per_step: float | None = None
    tokens_per_second: float | None = None
    steps: int | None = None  # steps reached
    steps_planned: int | None = None  # the step count the program aimed for, when it says
    grandparent_trial: int | None = None  # the parent's own parent, which curve_vs_grandparent compares
    grandparent_val_bpb: float | None = None
    grandparent_ms_per_step: float | None = None
    curve_vs_grandparent: tuple[CurveSample, ...] = ()


class FindingSummary(BaseModel):
    """A confirmed or refuted hypothesis of the campaign, as the agent reads it (the controller's
    ``controller.search.findings.Finding``, compacted)."""

    model_config = ConfigDict(frozen=True)

    verdict: str  # "confirmed" or "refuted"
    hypothesis: str
    change: str = ""  # e.g. "knobs MATRIX_LR 0.04 → 0.05; code +12 −3 lines"
    tier: str
    delta_bpb: float | None = None  # mean over seeds vs the incumbent it was tested against; < 0 better
    delta_std_bpb: float | None = None
    seeds: int = 0
    bytes_delta: int | None = None  # vs its parent
    ms_per_step_delta: float | None = None  # vs its parent
    note: str = ""  # why refuted; what stacking and ablation showed


class MergeTask(BaseModel):
    """A stack whose three-way merge conflicted (operation ``stack``): the parent program is the first
    win's, and the agent is asked to bring the second win's change into it (prompts/task_stack.txt)."""

    model_config = ConfigDict(frozen=True)

    own_hypothesis: str  # the first win: the program the change is replayed onto
    own_change: str  # its unified diff against the program it changed
    replayed_hypothesis: str  # the second win, whose change is replayed
    replayed_change: str  # its unified diff against its own parent
    conflicts: str  # what the merge could not decide: conflicted hunks, knobs both changed


class ProposalContext(BaseModel):
    """Everything the agent may use to propose a change to one parent program."""

    model_config = ConfigDict(frozen=True)

    operation: Operation = Operation.MUTATE  # the agent is asked for MUTATE or HYPOTHESIS
    entry: str = "train_gpt.py"
    files: dict[str, str]  # the parent program: path -> full text (never trimmed)
    allowed_files: tuple[str, ...] = ("train_gpt.py",)
    parent: ParentResult | None = None
    lineage: tuple[Outcome, ...] = ()  # root first
    tried_from_parent: tuple[Outcome, ...] = ()
    inspirations: tuple[Outcome, ...] = ()
    findings: tuple[FindingSummary, ...] = ()  # what the whole campaign has learned, most telling first
    human_hypothesis: str | None = None
    merge: MergeTask | None = None  # operation stack: the two changes to combine
    # operation adopt: why the deterministic port could not take the program (importer.adopt)
    adopt_gaps: tuple[str, ...] = ()
    known_source_hashes: frozenset[str] = frozenset()  # normalized hashes of every program tried

    @property
    def editable_files(self) -> tuple[str, ...]:
        """The files an edit may touch: ``allowed_files``, and always the entry file."""
        if self.entry in self.allowed_files:
            return self.allowed_files
        return (self.entry, *self.allowed_files)
