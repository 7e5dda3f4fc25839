"""The campaign's findings for people: the rows ``autogolf findings`` prints and the report's section.

The findings themselves are derived in controller.search.findings (the agent reads them too); this
module only reads them from an opened :class:`~controller.review.views.Campaign` and renders them.
"""

from __future__ import annotations

import html

from controller.review.views import Campaign
from controller.search.findings import Finding, Verdict, derive_findings


def campaign_findings(campaign: Campaign) -> list[Finding]:
    """Every decided hypothesis of ``campaign``, most telling first (see derive_findings)."""
    return derive_findings(campaign.config, campaign.trials, campaign.store)


def effect_text(finding: Finding) -> str:
    """``Δ -0.0123 ± 0.0011 bpb over 3 seeds (vs trial 0)``, or what is known of it."""
    if finding.delta_bpb is None:
        return "no seeds on the confirm tier"
    spread = f" ± {finding.delta_std_bpb:.4f}" if finding.delta_std_bpb is not None else ""
    against = f" vs trial {finding.incumbent_trial}" if finding.incumbent_trial is not None else ""
    return f"Δ {finding.delta_bpb:+.4f}{spread} bpb over {finding.seeds} seed(s){against}"


def cost_text(finding: Finding) -> str:
    """Bytes and step time against its parent."""
    parts = []
    if finding.bytes_delta is not None:
        parts.append(f"{finding.bytes_delta:+,} bytes")
    if finding.ms_per_step_delta is not None:
        parts.append(f"{finding.ms_per_step_delta:+.1f} ms/step")
    return " · ".join(parts)


def follow_up_text(finding: Finding) -> str:
    parts = []
    for f in finding.follow_ups:
        delta = f" {f.delta_bpb:+.4f}" if f.delta_bpb is not None else ""
        verdict = f" ({f.verdict})" if f.verdict else ""
        parts.append(f"trial {f.trial} {f.description}: {f.status}{delta}{verdict}")
    return "; ".join(parts)


def findings_html(findings: list[Finding]) -> str:
    """The report's findings table (links go to the trials' diff blocks)."""
    if not findings:
        return "<p class='muted'>No hypothesis has been confirmed or refuted yet.</p>"
    head = (
        "<tr><th>trial</th><th class='text'>verdict</th><th class='text'>hypothesis</th>"
        "<th class='text'>change</th><th class='text'>effect</th><th>p</th><th class='text'>cost</th>"
        "<th class='text'>why</th><th class='text'>stacks and ablations</th></tr>"
    )
    rows = []
    for f in findings:
        colour = "#116611" if f.verdict is Verdict.CONFIRMED else "#a31515"
        p_value = f"{f.p_value:.3g}" if f.p_value is not None else ""
        rows.append(
            f"<tr><td><a href='#trial-{f.trial}'>{f.trial}</a></td>"
            f"<td class='text' style='color:{colour}'>{_esc(str(f.verdict))}</td>"
            f"<td class='text'>{_esc(f.hypothesis[:120])}</td><td class='text'>{_esc(f.change)}</td>"
            f"<td class='text'>{_esc(effect_text(f))} [{_esc(f.tier)}]</td><td>{p_value}</td>"
            f"<td class='text'>{_esc(cost_text(f))}</td><td class='text'>{_esc(f.reason)}</td>"
            f"<td class='text'>{_esc(follow_up_text(f))}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)
