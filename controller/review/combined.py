"""The report's stacks and ablations (controller.search.stacking, .ablation): what each combined or
left out, how it scored against its parents, and what came of it."""

from __future__ import annotations

import html

from controller.review.views import Campaign
from controller.store.archive import Operation


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _delta(campaign: Campaign, trial: int, other: int | None) -> str:
    archive = campaign.archive
    if trial not in archive or other is None or other not in archive:
        return ""
    mine, theirs = archive.get(trial).val_bpb, archive.get(other).val_bpb
    return f"{mine - theirs:+.4f}" if mine is not None and theirs is not None else ""


def combined_html(campaign: Campaign) -> str:
    """Two tables: every stack trial and every ablation trial, conflicts and give-ups included."""
    drops = {t.attrs.drops.ablation: t.number for t in campaign.trials if t.attrs.drops is not None}
    stacks, ablations = [], []
    for t in campaign.trials:
        attrs, archive = t.attrs, campaign.archive
        if attrs.operation not in (Operation.STACK, Operation.ABLATE):
            continue
        scored = t.number in archive and archive.get(t.number).val_bpb is not None
        outcome = (
            f"{archive.get(t.number).val_bpb:.4f} bpb"
            if scored
            else _esc((attrs.status_reason.splitlines() or [attrs.status_reason])[0][:120])
        )
        if attrs.operation is Operation.STACK:
            confirmed = " · confirmed" if scored and archive.get(t.number).confirmed else ""
            stacks.append(
                f"<tr><td>{t.number}</td><td>{attrs.parent_trial}</td><td>{attrs.second_parent}</td>"
                f"<td>{_delta(campaign, t.number, attrs.parent_trial)}</td>"
                f"<td>{_delta(campaign, t.number, attrs.second_parent)}</td>"
                f"<td class='text'>{outcome}{confirmed}</td></tr>"
            )
        elif attrs.operation is Operation.ABLATE:
            if t.number in drops:
                verdict = f"dropped (trial {drops[t.number]}): replaces trial {attrs.parent_trial}"
            elif scored:
                verdict = "kept or pending"
            else:
                verdict = "kept"
            ablations.append(
                f"<tr><td>{t.number}</td><td>{attrs.parent_trial}</td>"
                f"<td class='text'>{_esc(attrs.ablated_part or '')}</td>"
                f"<td>{_delta(campaign, t.number, attrs.parent_trial)}</td>"
                f"<td class='text'>{outcome}</td><td class='text'>{_esc(verdict)}</td></tr>"
            )
    if not stacks and not ablations:
        return "<p class='muted'>No stacks or ablations yet (operations stack and ablate).</p>"
    parts = []
    if stacks:
        head = (
            "<tr><th>trial</th><th>onto</th><th>replayed</th><th>Δ onto</th><th>Δ replayed</th>"
            "<th class='text'>outcome</th></tr>"
        )
        parts.append(f"<h3>Stacks</h3><table>{head}{''.join(stacks)}</table>")
    if ablations:
        head = (
            "<tr><th>trial</th><th>win</th><th class='text'>part left out</th><th>Δ win</th>"
            "<th class='text'>outcome</th><th class='text'>part</th></tr>"
        )
        parts.append(f"<h3>Ablations</h3><table>{head}{''.join(ablations)}</table>")
    return "".join(parts)
