"""Adopting a foreign program: its port to the run contract planned as a trial, and the check that
makes the port a root.

The port is deterministic where the program follows the official script's structure
(``importer.adopt``: the program unchanged, autogolf's adapter appended) and the LLM's otherwise (a
port task, ``prompts/task_adopt.txt``, checked for the contract and smoke-run like any proposal).
Without an LLM a program the deterministic port cannot take is recorded as not run, with the gaps
named. Either way the trial runs in split phases with the full integrity probe, and the port counts
only when the harness's BPB equals the BPB the program itself printed in the same run
(:func:`judge_adoption`); both are recorded on the trial.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agent.errors import ProposalError
from agent.proposal import GiveUp, Operation, Proposal, ProposalContext, ProposerKind
from controller.search.imports import follows_contract, requires_cuda
from controller.store.trial_attrs import AdoptionCheck
from importer import find_requirements
from importer.adopt import NotOfficialStructure, official_structure_gaps, port_official
from sandbox import RunResult, RunStatus
from sandbox.knobs import parse_knob_table

DETERMINISTIC = "deterministic"
LLM = "llm"


@dataclass(frozen=True)
class Port:
    """What an adoption will run: the ported program, or why there is none."""

    proposal: Proposal | None
    port: str = DETERMINISTIC
    not_run: str = ""  # non-empty: no port; the trial is recorded as not run with this reason


def program_needs_cuda(source: str, entry: str) -> bool:
    return requires_cuda(find_requirements(source, filename=entry))


def port_program(
    source: str,
    *,
    entry: str,
    title: str,
    llm_port: Callable[[ProposalContext], Proposal | GiveUp] | None,
    extra_files: Mapping[str, str] | None = None,
) -> Port:
    """The deterministic port when the program allows it, else the LLM's (when there is one).
    ``extra_files`` (the modules it imports from its folder) travel with the port unchanged."""
    extra = dict(extra_files or {})
    try:
        ported = port_official(source)
    except NotOfficialStructure as exc:
        gaps = tuple(official_structure_gaps(source))
        if llm_port is None:
            return Port(
                None,
                LLM,
                not_run=f"not run: {exc}; without an LLM ([agent] proposer = 'llm') nothing can port it",
            )
        context = ProposalContext(
            operation=Operation.ADOPT,
            entry=entry,
            files={**extra, entry: source},
            allowed_files=(entry,),
            adopt_gaps=gaps,
        )
        proposal = llm_port(context)
        if isinstance(proposal, GiveUp):
            return Port(None, LLM, not_run=f"the LLM port gave up: {proposal.reason}")
        update = {"hypothesis": f"adopt {title}: {proposal.hypothesis}", "files": {**extra, **proposal.files}}
        return Port(proposal.model_copy(update=update), LLM)
    rationale = (
        "The program follows the official script's structure, so it runs unchanged under autogolf's "
        "run-contract adapter (importer/templates/contract_adapter.py): its main() trains, the adapter "
        "moves the compressed model into the artifact and scores it per token; its own eval_val prints "
        "the score the harness must match."
    )
    proposal = Proposal(
        hypothesis=f"adopt {title}: the official structure under the run contract (deterministic port)",
        rationale=rationale,
        files={**extra, entry: ported},
        proposer=ProposerKind.ADOPT,
    )
    return Port(proposal, DETERMINISTIC)


def check_port(source: str, entry: str) -> tuple[str, ...]:
    """The static half of an LLM port's check: a knob table and the contract's variables. Raises
    ProposalError (a repair turn for the agent) naming what is missing."""
    try:
        knobs = parse_knob_table(source, filename=entry)
    except ValueError as exc:
        raise ProposalError(f"The ported program's knob table does not parse: {exc}") from None
    if not follows_contract(source):
        raise ProposalError(
            "The ported program does not read GOLF_PHASE and GOLF_OUT: it must run the train and eval "
            "phases of the run contract as the task describes."
        )
    return tuple(k.name for k in knobs)


def judge_adoption(result: RunResult, port: str, tolerance: float) -> tuple[RunResult, AdoptionCheck]:
    """The run's result as an adoption: INVALID, with the reason, unless the harness's BPB and the
    program's printed BPB agree within ``tolerance``."""
    harness, printed = result.val_bpb, result.printed_bpb
    scored = result.status is RunStatus.OK and harness is not None
    accepted = scored and printed is not None and abs(harness - printed) <= tolerance
    check = AdoptionCheck(
        port=port, harness_bpb=harness, printed_bpb=printed, tolerance=tolerance, accepted=accepted
    )
    if not scored:
        return result, check
    if accepted:
        note = f"adoption accepted: the harness's {harness:.8f} bpb and the printed {printed:.8f} agree"
        return result.model_copy(update={"notes": [*result.notes, note]}), check
    if printed is None:
        reason = "adoption not accepted: its scored eval printed no val_bpb to compare the harness's with"
    else:
        reason = (
            f"adoption not accepted: the harness scores {harness:.6f} bpb and the program printed "
            f"{printed:.6f} (|Δ| {abs(harness - printed):.2e} > {tolerance:.0e}, [search] adopt_bpb_tolerance): "
            "its NLL file is not what its own evaluation computes"
        )
    return result.model_copy(
        update={"status": RunStatus.INVALID, "reason": reason, "val_bpb": None, "val_loss": None}
    ), check
