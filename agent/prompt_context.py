"""Text for the prompt's campaign-wide sections: how the parent trained (time, steps, bytes, loss
against its own parent) and the campaign's findings. :mod:`agent.prompt` places and budgets them.

An autoresearch fork reported markedly better search once its agent read richer training logs than
the final number, so the parent is described by what the challenge trades against: the step time in
a fixed training budget and the byte headroom, beside the loss curve.
"""

from __future__ import annotations

from agent.proposal import FindingSummary, ParentResult


def training_lines(parent: ParentResult) -> list[str]:
    """The parent's step time, steps and loss curve against its own parent, one fact per line."""
    lines = []
    pace = []
    if parent.train_budget_seconds is not None:
        pace.append(f"budget {parent.train_budget_seconds:.0f} s (the tier's training limit)")
    if parent.steps is not None:
        planned = f" of {parent.steps_planned:,} planned" if parent.steps_planned else ""
        pace.append(f"{parent.steps:,} steps reached{planned}")
    if parent.ms_per_step is not None:
        pace.append(f"{parent.ms_per_step:.1f} ms/step")
    if parent.tokens_per_second is not None:
        pace.append(f"{parent.tokens_per_second:,.0f} tokens/s")
    if pace:
        lines.append("training pace: " + " · ".join(pace))
    if parent.grandparent_trial is not None:
        numbers = []
        if parent.grandparent_val_bpb is not None:
            numbers.append(f"val_bpb {parent.grandparent_val_bpb:.4f}")
        if parent.grandparent_ms_per_step is not None:
            numbers.append(f"{parent.grandparent_ms_per_step:.1f} ms/step")
        if numbers:
            lines.append(f"its own parent (trial {parent.grandparent_trial}): " + " · ".join(numbers))
    if parent.curve_vs_grandparent:
        points = []
        for p in parent.curve_vs_grandparent:
            text = f"step {p.step} {p.train_loss:.3f}"
            if p.grandparent_loss is not None:
                text += f" ({p.train_loss - p.grandparent_loss:+.3f})"
            points.append(text)
        lines.append(
            "training loss vs its own parent at the same steps (difference in brackets, < 0 is lower): "
            + " · ".join(points)
        )
    return lines


def format_finding(finding: FindingSummary) -> str:
    text = f"- [{finding.verdict}] {finding.hypothesis}"
    if finding.change:
        text += f" ({finding.change})"
    numbers = []
    if finding.delta_bpb is not None:
        spread = f" ± {finding.delta_std_bpb:.4f}" if finding.delta_std_bpb is not None else ""
        numbers.append(
            f"Δ {finding.delta_bpb:+.4f}{spread} bpb over {finding.seeds} seed(s) ({finding.tier})"
        )
    if finding.bytes_delta is not None:
        numbers.append(f"bytes {finding.bytes_delta:+,}")
    if finding.ms_per_step_delta is not None:
        numbers.append(f"step {finding.ms_per_step_delta:+.1f} ms")
    if numbers:
        text += ": " + " · ".join(numbers)
    return text + (f" ({finding.note})" if finding.note else "")


def format_findings(findings: list[FindingSummary], omitted: int) -> str:
    lines = [format_finding(f) for f in findings]
    if omitted:
        lines.append(f"({omitted} less telling findings omitted to fit the prompt budget)")
    return "\n".join(lines) if lines else "(none yet)"
