"""The one path from reply text to a checked change: parse -> apply -> check.

LLM replies and replayed replies both go through :func:`realize_reply`; every way a reply can be
unusable ends in a :class:`ProposalError` whose message is written for the model (the repair turn
sends it verbatim). The static checks (agent.program_checks) run before the caller's
``check_program``, which may run the program: an empty change never costs a smoke run, let alone a
trial. An edit of what the program writes to the scored files is allowed, and named in
``scoring_change`` (agent.scoring_paths) so the controller can run it with the full integrity probe.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from agent.errors import ProposalError
from agent.format import parse_reply
from agent.hashing import normalized_source_hash
from agent.program_checks import declared_knobs, reading_style, same_code, table_mutations, unread_knobs
from agent.proposal import Edit, EditKind, Proposal, ProposalContext, ProposerKind, TokenUsage
from agent.scoring_paths import scoring_change
from agent.search_replace import apply_search_replace
from agent.unified_diff import apply_unified_diff

log = logging.getLogger(__name__)

CheckProgram = Callable[[str], tuple[str, ...]]


@dataclass(frozen=True)
class RealizedReply:
    hypothesis: str
    rationale: str
    edits: tuple[Edit, ...]
    files: dict[str, str]  # changed paths only, full new text
    new_knobs: tuple[str, ...]
    scoring_change: str = ""  # why the change alters what the program writes to a scored file

    def to_proposal(
        self,
        *,
        proposer: ProposerKind,
        usage: TokenUsage,
        turns: int,
        knob_values: dict[str, str] | None = None,
    ) -> Proposal:
        """The :class:`Proposal` for this change, with exact ``knob_values`` when the proposer sets them."""
        return Proposal(
            hypothesis=self.hypothesis,
            rationale=self.rationale,
            edits=self.edits,
            files=self.files,
            new_knobs=self.new_knobs,
            scoring_change=self.scoring_change,
            usage=usage,
            turns=turns,
            proposer=proposer,
            knob_values=knob_values or {},
        )


def parent_knob_names(context: ProposalContext, check_program: CheckProgram) -> tuple[str, ...]:
    """The parent's knob names; empty (with a warning) if the parent itself fails the check."""
    try:
        return tuple(check_program(context.files[context.entry]))
    except (ValueError, KeyError) as exc:
        log.warning("the parent program fails its own static check (%s); new_knobs will list all knobs", exc)
        return ()


def realize_reply(
    reply: str,
    context: ProposalContext,
    check_program: CheckProgram,
    parent_knobs: tuple[str, ...],
) -> RealizedReply:
    """Parse ``reply``, apply its edits to the parent, and check the result.

    Raises :class:`ProposalError` when the reply has no usable edit, an edit touches a file outside
    ``context.allowed_files``, a SEARCH fails to match exactly once, a diff does not apply, a changed
    Python file does not compile, the program changes ``KNOBS`` after its table literal, it equals the
    parent once comments, docstrings and layout are dropped, it equals an already-tried candidate, it
    declares a new knob it never reads, the knob table no longer parses (``check_program`` raised
    ValueError), or ``check_program`` raised a ProposalError of its own (re-raised unchanged).
    """
    parsed = parse_reply(reply, entry=context.entry)
    allowed = context.editable_files
    outside = sorted({edit.path for edit in parsed.edits if edit.path not in allowed})
    if outside:
        raise ProposalError(
            f"The reply edits {', '.join(outside)}, which may not be changed. Only these files may be "
            f"edited: {', '.join(sorted(set(allowed)))}. Put the change in {context.entry}."
        )

    files = dict(context.files)
    failures: list[str] = []
    for number, edit in enumerate(parsed.edits, start=1):
        label = f"Edit block {number} of {len(parsed.edits)}"
        try:
            if edit.kind is EditKind.SEARCH_REPLACE:
                current = files.get(edit.path, "")
                files[edit.path] = apply_search_replace(
                    current, edit.search, edit.replace, path=edit.path, label=label
                )
            else:
                files = apply_unified_diff(files, edit.diff, path=edit.path, label=label)
        except ProposalError as exc:
            failures.append(str(exc))
    if failures:
        applied = len(parsed.edits) - len(failures)
        summary = (
            f"{len(failures)} of {len(parsed.edits)} edit blocks failed ({applied} applied cleanly). "
            "Resend all edit blocks, corrected, against the original program."
        )
        raise ProposalError("\n\n".join([*failures, summary]))

    changed = {path: text for path, text in files.items() if context.files.get(path) != text}
    for path, text in changed.items():
        if path.endswith(".py"):
            _check_compiles(path, text)
    if context.entry not in files:
        raise ProposalError(f"The edits delete {context.entry}, the program's entry file; keep it.")
    source = files[context.entry]
    _check_table_stays_literal(context.entry, source)
    _check_not_duplicate(context, files, changed)
    _check_new_knobs_read(context, files)
    try:
        child_knobs = tuple(check_program(source))
    except ProposalError:
        raise  # the caller's own verdict (a failed or inert smoke run), already written for the model
    except ValueError as exc:
        raise ProposalError(
            f"After the edits the knob table of {context.entry} no longer parses: {exc}. Keep KNOBS a "
            "single module-level list of literal Knob(NAME, type, default, ...) entries."
        ) from exc
    known = set(parent_knobs)
    return RealizedReply(
        hypothesis=parsed.hypothesis,
        rationale=parsed.rationale,
        edits=parsed.edits,
        files=changed,
        new_knobs=tuple(name for name in child_knobs if name not in known),
        scoring_change=_scoring_change(context, changed),
    )


def _check_compiles(path: str, text: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarnings (odd escapes) are the program's business
            compile(text, path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        line_text = (exc.text or "").rstrip("\n")
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        quoted = f"\n    {exc.lineno} | {line_text}" if line_text.strip() else ""
        raise ProposalError(
            f"After the edits {path} does not compile: {type(exc).__name__} at {where}: {exc.msg}."
            f"{quoted}\nFix the edit so the whole file is valid Python."
        ) from exc
    except ValueError as exc:  # e.g. null bytes in the source
        raise ProposalError(f"After the edits {path} does not compile: {exc}.") from exc


def _check_table_stays_literal(entry: str, source: str) -> None:
    mutations = table_mutations(source)
    if mutations:
        raise ProposalError(
            f"After the edits {entry} changes KNOBS after its table ({'; '.join(mutations)}). The knob "
            "table is read without running the program, as the one literal list `KNOBS = [...]`, so a "
            "knob added any other way is never tuned and never listed. Keep KNOBS one literal list: put "
            "each new Knob(NAME, type, default, ...) inside that list and do not change KNOBS anywhere else."
        )


def _same_behaviour(path: str, old: str, new: str) -> bool:
    """Only comments, layout or (for Python) docstrings differ."""
    if normalized_source_hash(new) == normalized_source_hash(old):
        return True
    return path.endswith(".py") and same_code(new, old)


def _check_not_duplicate(context: ProposalContext, files: dict[str, str], changed: dict[str, str]) -> None:
    if all(_same_behaviour(path, context.files.get(path, ""), text) for path, text in changed.items()):
        detail = "" if not changed else " (it differs only in comments, docstrings, blank lines or spacing)"
        raise ProposalError(
            f"After the edits the program is identical to the parent{detail}. Make a change that "
            "alters what the program does."
        )
    if normalized_source_hash(files[context.entry]) in context.known_source_hashes:
        raise ProposalError(
            "After the edits the program is identical to a candidate that was already tried. "
            "Propose a different change; the list of what was already tried is in the first message."
        )


def _check_new_knobs_read(context: ProposalContext, files: dict[str, str]) -> None:
    parent = context.files.get(context.entry, "")
    before = declared_knobs(parent)
    new = [name for name in declared_knobs(files[context.entry]) if name not in before]
    # The entry first; any other Python file of the program may read a knob too.
    sources = [
        files[context.entry],
        *(t for p, t in files.items() if p != context.entry and p.endswith(".py")),
    ]
    unread = unread_knobs(new, sources)
    if unread:
        which = f"knob {unread[0]} is" if len(unread) == 1 else f"knobs {', '.join(unread)} are"
        them = "it" if len(unread) == 1 else "them"
        style = reading_style(parent, before)
        how = (
            f"{style.describe()}: read {unread[0]} as `{style.expression(unread[0])}` where"
            if style is not None
            else f"Read {unread[0]} where"
        )
        raise ProposalError(
            f"After the edits the new {which} declared in KNOBS but the program never reads {them}, so "
            "the run would repeat the parent and the tuner would search a setting that does nothing. "
            f"{how} the setting should take effect, or drop the knob."
        )


def _scoring_change(context: ProposalContext, changed: dict[str, str]) -> str:
    """``scoring_change`` of each changed Python file, the entry's unprefixed."""
    reasons = []
    for path, text in changed.items():
        if path.endswith(".py"):
            reason = scoring_change(context.files.get(path, ""), text)
            if reason:
                reasons.append(reason if path == context.entry else f"{path}: {reason}")
    return "; ".join(reasons)
