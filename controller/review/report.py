"""``autogolf report``: one self-contained HTML file (inline SVG and CSS, no script, nothing fetched).

Sections: BPB over trials, the frontier over time, bytes vs BPB with the artifact limit, the lineage
tree, per-operation success rates, spend, the leaderboard, the findings (confirmed and refuted
hypotheses, controller.review.findings), and every ranked candidate's diff against
its parent in a ``<details id="trial-N">`` block that the leaderboard links to.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from optuna.trial import TrialState

from controller.review.combined import combined_html
from controller.review.findings import campaign_findings, findings_html
from controller.review.steps import LEGEND, StepCount
from controller.review.views import Campaign, LeaderboardRow, leaderboard, llm_spend
from controller.store.archive import Candidate

OPERATION_COLOURS = {
    "seed": "#222222",
    "mutate": "#1f77b4",
    "tune": "#ff7f0e",
    "hypothesis": "#2ca02c",
    "confirm": "#9467bd",
    "stack": "#8c564b",
    "ablate": "#17becf",
}
WIDTH, HEIGHT = 640, 300
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 15, 45
MAX_DIFFS = 200  # diffs embedded; a long campaign's report stays a few MB

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}
td.text,th.text{text-align:left}tr:nth-child(even){background:#f7f7f7}
pre{background:#f6f8fa;padding:8px;overflow-x:auto;font-size:.85em}
.add{color:#116611;background:#e6ffec}.del{color:#a31515;background:#ffebe9}.hunk{color:#6a4fb3}
svg text{font-size:11px;fill:#333}.grid{stroke:#eee}.axis{stroke:#555}
ul.tree{list-style:none;padding-left:1.2em;border-left:1px dotted #bbb}.muted{color:#777}
.bar{display:inline-block;height:10px;background:#2ca02c}
td.cut{background:#fff3cd;color:#8a5300;font-weight:bold}
"""


@dataclass(frozen=True)
class _Axes:
    """Maps data coordinates to pixels in a WIDTH x HEIGHT plot with margins for tick labels."""

    x_low: float
    x_high: float
    y_low: float
    y_high: float

    @classmethod
    def around(cls, xs: Sequence[float], ys: Sequence[float]) -> _Axes:
        return cls(*_padded(xs), *_padded(ys))

    def px(self, x: float) -> float:
        span = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
        return MARGIN_LEFT + (x - self.x_low) / (self.x_high - self.x_low) * span

    def py(self, y: float) -> float:
        span = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
        return HEIGHT - MARGIN_BOTTOM - (y - self.y_low) / (self.y_high - self.y_low) * span

    def frame(
        self,
        x_label: str,
        y_label: str,
        x_format: Callable[[float], str],
        x_ticks: Sequence[float] | None = None,
    ) -> list[str]:
        """Grid, tick labels and axis titles; ``x_ticks`` replaces the five even x ticks (whole
        trial numbers, so that no label repeats)."""
        parts = []
        even = [self.x_low + (self.x_high - self.x_low) * i / 4 for i in range(5)]
        for x in x_ticks if x_ticks is not None else even:
            parts.append(
                f'<line class="grid" x1="{self.px(x):.1f}" y1="{MARGIN_TOP}" x2="{self.px(x):.1f}" '
                f'y2="{HEIGHT - MARGIN_BOTTOM}"/><text x="{self.px(x):.1f}" y="{HEIGHT - MARGIN_BOTTOM + 15}" '
                f'text-anchor="middle">{_esc(x_format(x))}</text>'
            )
        for i in range(5):
            y = self.y_low + (self.y_high - self.y_low) * i / 4
            parts.append(
                f'<line class="grid" x1="{MARGIN_LEFT}" y1="{self.py(y):.1f}" x2="{WIDTH - MARGIN_RIGHT}" '
                f'y2="{self.py(y):.1f}"/><text x="{MARGIN_LEFT - 5}" y="{self.py(y) + 4:.1f}" '
                f'text-anchor="end">{y:.4f}</text>'
            )
        bottom, left = HEIGHT - MARGIN_BOTTOM, MARGIN_LEFT
        parts.append(
            f'<line class="axis" x1="{left}" y1="{bottom}" x2="{WIDTH - MARGIN_RIGHT}" y2="{bottom}"/>'
            f'<line class="axis" x1="{left}" y1="{MARGIN_TOP}" x2="{left}" y2="{bottom}"/>'
            f'<text x="{(left + WIDTH - MARGIN_RIGHT) / 2}" y="{HEIGHT - 8}" text-anchor="middle">'
            f"{_esc(x_label)}</text>"
            f'<text transform="translate(14 {(MARGIN_TOP + bottom) / 2}) rotate(-90)" '
            f'text-anchor="middle">{_esc(y_label)}</text>'
        )
        return parts


def integer_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Up to about ``count`` whole numbers inside ``[low, high]``, evenly stepped, each once."""
    first, last = math.ceil(low), math.floor(high)
    if last < first:
        return [float(round((low + high) / 2))]
    step = max(1, math.ceil((last - first) / max(count - 1, 1)))
    return [float(v) for v in range(first, last + 1, step)]


def _padded(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
    return low - pad, high + pad


def _svg(parts: list[str], label: str) -> str:
    body = "".join(parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{_esc(label)}">{body}</svg>'
    )


def _dot(axes: _Axes, x: float, y: float, colour: str, tip: str, href: str | None = None) -> str:
    circle = (
        f'<circle cx="{axes.px(x):.1f}" cy="{axes.py(y):.1f}" r="4" fill="{colour}" fill-opacity="0.8">'
        f"<title>{_esc(tip)}</title></circle>"
    )
    return f'<a href="{href}">{circle}</a>' if href else circle


def _step_path(axes: _Axes, points: list[tuple[float, float]]) -> str:
    """A step line: the best so far holds until the next improvement."""
    if not points:
        return ""
    d = f"M{axes.px(points[0][0]):.1f},{axes.py(points[0][1]):.1f}"
    for x, y in points[1:]:
        d += f" H{axes.px(x):.1f} V{axes.py(y):.1f}"
    return f'<path d="{d}" fill="none" stroke="#d62728" stroke-width="2"/>'


def _legend(pruned: bool = False) -> str:
    items = " ".join(
        f'<span style="color:{colour}">&#9679;</span> {name}' for name, colour in OPERATION_COLOURS.items()
    )
    crosses = " · &#215; pruned (no score)" if pruned else ""
    return f'<p class="muted">{items} · <span style="color:#d62728">&#9644;</span> best so far{crosses}</p>'


def bpb_over_trials(candidates: list[Candidate], pruned: Sequence[int] = ()) -> str:
    """Each scored trial's BPB (coloured by operation, grey when not eligible), the best so far, and
    the pruned trials (stopped early, so no score) as crosses along the top."""
    scored = [c for c in candidates if c.val_bpb is not None]
    if not scored:
        return '<p class="muted">no scored trials yet</p>'
    trials = [c.trial for c in scored] + list(pruned)
    axes = _Axes.around(trials, [c.val_bpb for c in scored if c.val_bpb is not None])
    ticks = integer_ticks(max(axes.x_low, 0.0), axes.x_high)  # trial numbers start at 0
    parts = axes.frame("trial", "val_bpb", lambda x: str(int(x)), ticks)
    for number in pruned:
        parts.append(
            f'<text x="{axes.px(number):.1f}" y="{MARGIN_TOP + 10}" text-anchor="middle" fill="#999">'
            f"&#215;<title>trial {number}: pruned (stopped early, no score)</title></text>"
        )
    best, steps = math.inf, []
    for c in scored:
        assert c.val_bpb is not None
        if c.eligible and c.val_bpb < best:
            best = c.val_bpb
            steps.append((float(c.trial), best))
        colour = OPERATION_COLOURS.get(str(c.operation), "#888") if c.eligible else "#cccccc"
        tip = f"trial {c.trial} ({c.operation}): {c.val_bpb:.4f} bpb"
        parts.append(_dot(axes, c.trial, c.val_bpb, colour, tip, f"#trial-{c.trial}"))
    if steps:
        steps.append((float(scored[-1].trial), steps[-1][1]))
    parts.append(_step_path(axes, steps))
    return _svg(parts, "BPB over trials") + _legend(bool(pruned))


def frontier_over_time(campaign: Campaign, candidates: list[Candidate]) -> str:
    """Best eligible BPB against hours since the campaign's first trial started."""
    starts = [t.started for t in campaign.trials if t.started is not None]
    done = {t.number: t.completed for t in campaign.trials if t.completed is not None}
    timed = sorted((done[c.trial], c) for c in candidates if c.eligible and c.trial in done)
    if not starts or not timed:
        return '<p class="muted">no eligible candidates yet</p>'
    origin = min(starts)
    best, points = math.inf, []
    for when, c in timed:
        assert c.val_bpb is not None
        if c.val_bpb < best:
            best = c.val_bpb
            points.append(((when - origin).total_seconds() / 3600, best))
    end = (max(done.values()) - origin).total_seconds() / 3600
    points.append((end, best))
    unit, scale = ("hours", 1.0) if end >= 2 else ("minutes", 60.0)
    points = [(x * scale, y) for x, y in points]
    axes = _Axes.around([0.0, end * scale], [y for _, y in points])
    parts = axes.frame(f"{unit} since the first trial", "best val_bpb", lambda x: f"{max(x, 0.0):.1f}")
    parts.append(_step_path(axes, points))
    parts += [_dot(axes, x, y, "#d62728", f"{y:.4f} bpb at {x:.1f} {unit}") for x, y in points[:-1]]
    return _svg(parts, "frontier over time")


def bytes_vs_bpb(candidates: list[Candidate], limit_bytes: int) -> str:
    sized = [c for c in candidates if c.val_bpb is not None and c.artifact_bytes is not None]
    if not sized:
        return '<p class="muted">no sized candidates yet</p>'
    high = max(limit_bytes, *(c.artifact_bytes or 0 for c in sized)) * 1.05
    ys = [c.val_bpb for c in sized if c.val_bpb is not None]
    axes = _Axes(0.0, high, *_padded(ys))
    parts = axes.frame("artifact bytes (MB = 10^6)", "val_bpb", lambda x: f"{x / 1e6:.1f} MB")
    x = axes.px(limit_bytes)
    parts.append(
        f'<line x1="{x:.1f}" y1="{MARGIN_TOP}" x2="{x:.1f}" y2="{HEIGHT - MARGIN_BOTTOM}" stroke="#d62728" '
        f'stroke-dasharray="5,4"/><text x="{x - 4:.1f}" y="{MARGIN_TOP + 12}" text-anchor="end">'
        f"limit {limit_bytes:,} bytes</text>"
    )
    for c in sized:
        assert c.val_bpb is not None and c.artifact_bytes is not None
        colour = OPERATION_COLOURS.get(str(c.operation), "#888") if c.feasible else "#d62728"
        tip = f"trial {c.trial}: {c.artifact_bytes:,} bytes, {c.val_bpb:.4f} bpb"
        parts.append(_dot(axes, c.artifact_bytes, c.val_bpb, colour, tip, f"#trial-{c.trial}"))
    return _svg(parts, "bytes vs BPB")


def lineage_tree(candidates: list[Candidate]) -> str:
    children: dict[int | None, list[Candidate]] = defaultdict(list)
    known = {c.trial for c in candidates}
    for c in candidates:
        children[c.parent_trial if c.parent_trial in known else None].append(c)

    def node(c: Candidate) -> str:
        bpb = f"{c.val_bpb:.4f}" if c.val_bpb is not None else str(c.status)
        mark = " ★" if c.confirmed else ""
        kids = "".join(node(k) for k in children.get(c.trial, []))
        sub = f'<ul class="tree">{kids}</ul>' if kids else ""
        return (
            f'<li><a href="#trial-{c.trial}">trial {c.trial}</a> <b>{bpb}</b>{mark} '
            f'<span class="muted">{_esc(str(c.operation))}: {_esc(c.hypothesis[:100])}</span>{sub}</li>'
        )

    roots = "".join(node(c) for c in children.get(None, []))
    return f'<ul class="tree">{roots}</ul><p class="muted">★ parent of record (confirmed)</p>'


def operation_table(campaign: Campaign) -> str:
    """Per operation: trials, scored, failed, how many beat their parent, and the cost."""
    rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    archive = campaign.archive
    for t in campaign.trials:
        op = str(t.attrs.operation or "?")
        row = rows[op]
        row["trials"] += 1
        row["scored"] += t.trial_state is TrialState.COMPLETE
        row["failed"] += t.trial_state is TrialState.FAIL
        row["pruned"] += t.trial_state is TrialState.PRUNED
        row["cost"] += t.attrs.cost_usd or 0.0
        row["seconds"] += (t.completed - t.started).total_seconds() if t.completed and t.started else 0.0
        if t.number in archive and archive.get(t.number).parent_trial in archive:
            mine, parent = archive.get(t.number), archive.get(archive.get(t.number).parent_trial)  # type: ignore[arg-type]
            if mine.eligible and parent.val_bpb is not None and mine.val_bpb is not None:
                row["improved"] += mine.val_bpb < parent.val_bpb
    head = "<tr><th class='text'>operation</th><th>trials</th><th>scored</th><th>failed</th><th>pruned</th>"
    head += "<th>beat parent</th><th class='text'>success</th><th>LLM $</th><th>trial hours</th></tr>"
    body = []
    for op, row in sorted(rows.items()):
        rate = row["improved"] / row["trials"] if row["trials"] else 0.0
        body.append(
            f"<tr><td class='text'>{_esc(op)}</td><td>{row['trials']:.0f}</td><td>{row['scored']:.0f}</td>"
            f"<td>{row['failed']:.0f}</td><td>{row['pruned']:.0f}</td><td>{row['improved']:.0f}</td>"
            "<td class='text'>"
            f"<span class='bar' style='width:{100 * rate:.0f}px'></span> {100 * rate:.0f}%</td>"
            f"<td>{row['cost']:.2f}</td><td>{row['seconds'] / 3600:.2f}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def spend_summary(campaign: Campaign) -> str:
    llm = llm_spend(campaign.run_dir)
    tokens = sum(t.attrs.tokens for t in campaign.trials)
    seconds = sum(
        (t.completed - t.started).total_seconds() for t in campaign.trials if t.completed and t.started
    )
    budget = campaign.config.budget
    cap = f" of ${budget.max_llm_usd:.2f}" if budget.max_llm_usd is not None else ""
    trials = f" of {budget.max_trials}" if budget.max_trials is not None else ""
    return (
        f"<p>LLM: <b>${llm:.2f}</b>{cap} ({tokens:,} tokens) · trials: <b>{len(campaign.trials)}</b>{trials}"
        f" · trial wall time: <b>{seconds / 3600:.2f} h</b></p>"
    )


def leaderboard_table(rows: list[LeaderboardRow]) -> str:
    head = (
        "<tr><th>#</th><th>trial</th><th>val_bpb</th><th>± std</th><th>seeds</th><th>Δ parent</th>"
        "<th>Δ seed</th><th>bytes</th><th>headroom</th><th>train s</th><th>eval s</th><th>steps</th>"
        "<th>verified</th><th>confirmed</th><th class='text'>hypothesis</th></tr>"
    )
    body = []
    for r in rows:
        mark = " <span title='run as published: its own log line, not recomputed'>(self-reported)</span>"
        body.append(
            f"<tr><td>{r.rank}</td><td><a href='#trial-{r.trial}'>{r.trial}</a></td>"
            f"<td>{r.val_bpb:.4f}{mark if r.self_reported else ''}</td>"
            f"<td>{_num(r.val_bpb_std, '.4f')}</td><td>{r.seeds}</td><td>{_num(r.delta_parent_bpb, '+.4f')}</td>"
            f"<td>{_num(r.delta_seed_bpb, '+.4f')}</td><td>{_num(r.artifact_bytes, ',')}</td>"
            f"<td>{_num(r.headroom_bytes, ',')}</td><td>{_num(r.train_seconds, '.1f')}</td>"
            f"<td>{_num(r.eval_seconds, '.1f')}</td>{_steps_cell(r.steps)}<td>{'yes' if r.verified else ''}</td>"
            f"<td>{'yes' if r.confirmed else ''}</td>"
            f"<td class='text'>{_esc(r.hypothesis[:120])}</td></tr>"
        )
    legend = f"<p class='muted'>{_esc(LEGEND)}</p>" if any(not r.steps.comparable for r in rows) else ""
    return f"<table>{head}{''.join(body)}</table>{legend}"


def _steps_cell(steps: StepCount) -> str:
    """Reached/planned steps; a run cut short of (or past) its plan is marked as not comparable."""
    if steps.comparable:
        return f"<td>{_esc(steps.label)}</td>"
    return f"<td class='cut' title='not comparable: {_esc(steps.explain())}'>{_esc(steps.label)}</td>"


def diff_blocks(campaign: Campaign, candidates: list[Candidate]) -> str:
    blocks = []
    for c in candidates:
        parent = campaign.archive.get(c.parent_trial) if c.parent_trial in campaign.archive else None
        diff = campaign.store.diff(parent.commit, c.commit) if parent else ""
        bpb = f"{c.val_bpb:.4f} bpb" if c.val_bpb is not None else str(c.status)
        against = f"against trial {parent.trial}" if parent else "a root program"
        blocks.append(
            f'<details id="trial-{c.trial}"><summary>trial {c.trial} · {bpb} · {_esc(str(c.operation))} · '
            f"{_esc(c.hypothesis[:120])} <span class='muted'>({against}, commit {c.commit[:12]})</span>"
            f"</summary>{_diff_html(diff) if diff else '<p class=muted>no diff</p>'}</details>"
        )
    return "\n".join(blocks)


def _diff_html(diff: str) -> str:
    lines = []
    for line in diff.splitlines():
        cls = ""
        if line.startswith("+") and not line.startswith("+++"):
            cls = "add"
        elif line.startswith("-") and not line.startswith("---"):
            cls = "del"
        elif line.startswith("@@"):
            cls = "hunk"
        lines.append(f'<span class="{cls}">{_esc(line)}</span>' if cls else _esc(line))
    return "<pre>" + "\n".join(lines) + "</pre>"


def render_report(campaign: Campaign, *, max_diffs: int = MAX_DIFFS) -> str:
    """The whole report as one HTML document."""
    tier = campaign.explore_tier
    candidates = [c for c in campaign.archive if c.tier == tier]
    rows = leaderboard(campaign, tier=tier, include_ineligible=True)
    ranked = [campaign.archive.get(r.trial) for r in rows][:max_diffs]
    limit_bytes = campaign.config.tiers.get(tier).artifact_bytes
    name = _esc(campaign.config.campaign.name)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        f"<h1>autogolf campaign <code>{name}</code></h1>",
        f"<p class='muted'>generated {generated} · explore tier <code>{_esc(tier)}</code> · "
        f"{len(campaign.trials)} trials, {len(candidates)} scored programs</p>",
        "<h2>Spend</h2>",
        spend_summary(campaign),
        "<h2>BPB over trials</h2>",
        bpb_over_trials(
            candidates, [t.number for t in campaign.trials if t.trial_state is TrialState.PRUNED]
        ),
        "<h2>Frontier over time</h2>",
        frontier_over_time(campaign, candidates),
        "<h2>Bytes vs BPB</h2>",
        bytes_vs_bpb(candidates, limit_bytes),
        "<h2>Leaderboard</h2>",
        leaderboard_table(rows),
        "<h2>Findings</h2>",
        findings_html(campaign_findings(campaign)),
        "<h2>Operations</h2>",
        operation_table(campaign),
        "<h2>Stacks and ablations</h2>",
        combined_html(campaign),
        "<h2>Lineage</h2>",
        lineage_tree(list(campaign.archive)),
        "<h2>Changes</h2>",
        diff_blocks(campaign, ranked),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>autogolf · {name}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def write_report(campaign: Campaign, path: Path, *, max_diffs: int = MAX_DIFFS) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(campaign, max_diffs=max_diffs), encoding="utf-8")
    return path


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _num(value: float | int | None, spec: str) -> str:
    return format(value, spec) if value is not None else ""
