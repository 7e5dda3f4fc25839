"""Assembling the conversation from the templates in ``prompts/`` and a :class:`ProposalContext`.

Templates use :class:`string.Template` (``$name`` placeholders; ``$$`` for a literal dollar), so the
program text, full of braces, can be substituted safely and no template engine is needed.

Token budget: tokens are estimated as characters / 4 (the usual rule of thumb for English and code
with BPE tokenizers; it errs on the generous side for code). When the prompt is over budget, history
is trimmed in this order: inspirations (weakest last, dropped first), then the campaign's findings
(least telling last, dropped first), then what was tried from this parent (oldest first), then the
lineage (oldest first). The program is never trimmed; if it alone exceeds the budget it is still sent
and a warning is logged. The research brief (agent.brief) is sent whole with the system message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from agent.errors import AgentConfigError
from agent.prompt_context import format_findings, training_lines
from agent.proposal import Operation, Outcome, OutcomeStatus, ParentResult, ProposalContext

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
DEFAULT_PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
_LOG_TAIL_CHARS = 4000  # a failed parent's log: the end holds the traceback
_TEMPLATE_NAMES = ("system", "user", "repair", "task_mutate", "task_hypothesis", "task_stack", "task_adopt")


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


class PromptTemplates:
    """The text templates, read once from a folder (the repository's ``prompts/`` by default)."""

    def __init__(self, folder: Path | None = None) -> None:
        folder = folder or DEFAULT_PROMPTS_DIR
        self.templates: dict[str, Template] = {}
        for name in _TEMPLATE_NAMES:
            path = folder / f"{name}.txt"
            if not path.is_file():
                raise AgentConfigError(
                    f"prompt template {path} is missing; the agent needs {', '.join(_TEMPLATE_NAMES)} "
                    f"(.txt) in {folder}",
                    hint="set prompts_dir in the agent settings to a folder that has them all, or leave it "
                    "unset for the repository's prompts/",
                )
            self.templates[name] = Template(path.read_text(encoding="utf-8"))

    def render(self, name: str, **values: str) -> str:
        return self.templates[name].substitute(values)


@dataclass(frozen=True)
class Prompt:
    system: str
    user: str
    omitted: dict[str, int] = field(default_factory=dict)  # section -> entries trimmed for the budget

    @property
    def estimated_tokens(self) -> int:
        return estimate_tokens(self.system) + estimate_tokens(self.user)

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]


def build_prompt(
    context: ProposalContext, templates: PromptTemplates, token_budget: int, *, brief: str = ""
) -> Prompt:
    """The first two messages for ``context``, trimmed to ``token_budget`` as the module explains;
    ``brief`` (agent.brief.read_brief) closes the system message."""
    system = templates.render("system", entry=context.entry, allowed_files=", ".join(context.editable_files))
    if brief.strip():
        system = f"{system.rstrip()}\n\n{brief.strip()}\n"
    if context.operation == Operation.HYPOTHESIS:
        if not context.human_hypothesis:
            raise ValueError("operation 'hypothesis' needs context.human_hypothesis (the idea to test)")
        task = templates.render("task_hypothesis", human_hypothesis=context.human_hypothesis.strip())
    elif context.operation == Operation.STACK:
        if context.merge is None:
            raise ValueError("operation 'stack' needs context.merge (the two changes to combine)")
        task = templates.render("task_stack", **context.merge.model_dump())
    elif context.operation == Operation.ADOPT:
        gaps = "\n".join(f"- {gap}" for gap in context.adopt_gaps) or "- (none named)"
        task = templates.render("task_adopt", gaps=gaps)
    else:
        task = templates.render("task_mutate")
    history = {
        "inspirations": list(context.inspirations),
        "tried_from_parent": list(context.tried_from_parent),
        "lineage": list(context.lineage),
    }
    findings = list(context.findings)
    omitted = dict.fromkeys([*history, "findings"], 0)
    fixed = {"task": task, "program": format_program(context), "parent_result": format_parent(context.parent)}

    def render_user() -> str:
        sections = {
            name: format_outcomes(entries, omitted[name], oldest_first=name != "inspirations")
            for name, entries in history.items()
        }
        return templates.render(
            "user", **fixed, **sections, findings=format_findings(findings, omitted["findings"])
        )

    user = render_user()
    # Trim order: inspirations and findings from the end (they come best first), then the two
    # histories from the front (oldest first).
    for name in ("inspirations", "findings", "tried_from_parent", "lineage"):
        entries: list = findings if name == "findings" else history[name]
        while estimate_tokens(system) + estimate_tokens(user) > token_budget and entries:
            if name in ("inspirations", "findings"):
                entries.pop()
            else:
                entries.pop(0)
            omitted[name] += 1
            user = render_user()
    prompt = Prompt(system=system, user=user, omitted={k: v for k, v in omitted.items() if v})
    if prompt.estimated_tokens > token_budget:
        log.warning(
            "the prompt is ~%d tokens, over the budget of %d even with all history trimmed; the program "
            "is sent whole anyway (raise prompt_token_budget or expect truncation by the server)",
            prompt.estimated_tokens,
            token_budget,
        )
    return prompt


def format_program(context: ProposalContext) -> str:
    # The entry file first; every file whole, because SEARCH blocks must quote it exactly.
    paths = sorted(context.files, key=lambda p: (p != context.entry, p))
    return "\n\n".join(f"## {path}\n```python\n{context.files[path].rstrip()}\n```" for path in paths)


def format_parent(parent: ParentResult | None) -> str:
    if parent is None:
        return "Not scored yet."
    lines = [f"status: {parent.status}"]
    if parent.val_bpb is not None:
        lines.append(f"val_bpb: {parent.val_bpb:.4f}")
    if parent.artifact_bytes is not None:
        headroom = parent.artifact_limit_bytes - parent.artifact_bytes
        lines.append(
            f"artifact: {parent.artifact_bytes:,} bytes of {parent.artifact_limit_bytes:,} "
            f"({headroom:,} bytes {'of headroom' if headroom >= 0 else 'OVER the limit'})"
        )
    if parent.train_seconds is not None:
        lines.append(f"train time: {parent.train_seconds:.1f} s")
    if parent.eval_seconds is not None:
        lines.append(f"eval time: {parent.eval_seconds:.1f} s")
    if parent.curve_summary:
        lines.append(f"training loss: {parent.curve_summary}")
    lines.extend(training_lines(parent))
    if parent.log_tail and parent.status != OutcomeStatus.OK:
        tail = parent.log_tail[-_LOG_TAIL_CHARS:]
        lines.append(f"end of its log:\n```\n{tail.rstrip()}\n```")
    return "\n".join(lines)


def format_outcome(outcome: Outcome) -> str:
    text = f"- [{outcome.status}] {outcome.hypothesis}"
    numbers = []
    if outcome.val_bpb is not None:
        numbers.append(f"val_bpb {outcome.val_bpb:.4f}")
    if outcome.delta_bpb is not None:
        numbers.append(f"({outcome.delta_bpb:+.4f} vs its parent)")
    if numbers:
        text += ": " + " ".join(numbers)
    return text + (f" ({outcome.note})" if outcome.note else "")


def format_outcomes(entries: list[Outcome], omitted: int, *, oldest_first: bool) -> str:
    lines = [format_outcome(o) for o in entries]
    if omitted:
        which = "older" if oldest_first else "lower-ranked"
        note = f"({omitted} {which} entries omitted to fit the prompt budget)"
        lines = [note, *lines] if oldest_first else [*lines, note]
    return "\n".join(lines) if lines else "(none)"
