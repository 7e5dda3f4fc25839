"""``autogolf findings <campaign.toml>``: what the campaign has learned, one row per confirmed or
refuted hypothesis (controller.search.findings). Reads only; safe while the campaign runs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from controller.cli.review import CampaignArg, JsonOption, _open, _print_json
from controller.cli.terminal import console


def register(app: typer.Typer) -> None:
    """Add the ``findings`` command to the ``autogolf`` app."""
    app.command()(findings)


def findings(
    campaign: CampaignArg,
    as_json: JsonOption = False,
    verdict: Annotated[str | None, typer.Option(help="only 'confirmed' or only 'refuted' ones")] = None,
) -> None:
    """Confirmed and refuted hypotheses: the change, Δ BPB ± std over seeds, bytes, step time, and
    what stacking and ablation showed."""
    from controller.review.findings import campaign_findings, cost_text, effect_text, follow_up_text

    if verdict not in (None, "confirmed", "refuted"):
        raise typer.BadParameter(f"{verdict!r}: give 'confirmed' or 'refuted'", param_hint="--verdict")
    rows = campaign_findings(_open(campaign))
    if verdict is not None:
        rows = [f for f in rows if str(f.verdict) == verdict]
    if as_json:
        _print_json([f.model_dump(mode="json") for f in rows])
        return
    if not rows:
        console.print("no hypothesis has been confirmed or refuted yet")
        return
    table = Table(title="findings")
    for column in ("trial", "verdict", "effect", "p", "cost"):
        table.add_column(column, no_wrap=True)
    table.add_column("hypothesis and change", overflow="fold", ratio=1)
    for f in rows:
        style = "green" if str(f.verdict) == "confirmed" else "red"
        details = [f.hypothesis[:90], f"[dim]{escape(f.change)}[/]"]
        if str(f.verdict) == "refuted":
            details.append(f"[dim]why: {escape(f.reason)}[/]")
        if f.follow_ups:
            details.append(f"[dim]{escape(follow_up_text(f))}[/]")
        table.add_row(
            str(f.trial),
            f"[{style}]{f.verdict}[/]",
            escape(f"{effect_text(f)} [{f.tier}]"),
            f"{f.p_value:.3g}" if f.p_value is not None else "",
            escape(cost_text(f)),
            "\n".join([escape(details[0]), *details[1:]]),
        )
    console.print(table)
