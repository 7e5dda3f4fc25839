"""Review and steering commands of ``autogolf``: status, leaderboard, show, diff, hypothesis, enqueue,
seed, confirm, export, report, dashboard. ``controller.cli.app`` adds them with ``register(app)``.

Every command takes the campaign file first, like ``autogolf run``. Reading commands never take the
campaign's lock, so they work while the campaign runs; steering commands append to its request queue
(controller.search.requests), which the loop consumes before its own plans.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from controller.cli.terminal import console, load

CampaignArg = Annotated[Path, typer.Argument(help="campaign file, e.g. experiments/demo.toml")]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]
hypothesis_app = typer.Typer(help="Queue your own ideas for the agent, and see what came of them.")


def register(app: typer.Typer) -> None:
    """Add the review and steering commands to the ``autogolf`` app."""
    for command in (status, leaderboard, show, diff, enqueue, confirm, export, report, dashboard):
        app.command()(command)
    app.add_typer(hypothesis_app, name="hypothesis")


def _open(campaign: Path):
    import optuna

    from controller.review.views import Campaign

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return Campaign.open(load(campaign))


def _num(value: float | int | None, spec: str) -> str:
    return format(value, spec) if value is not None else ""


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def status(campaign: CampaignArg, as_json: JsonOption = False) -> None:
    """Campaign state: trials by state, best BPB of record, budget spent, queue, workers."""
    from controller.review.views import campaign_status

    state = campaign_status(_open(campaign))
    if as_json:
        _print_json(state.model_dump(mode="json"))
        return
    console.print(f"[bold]{state.campaign}[/] in {state.run_dir}")
    console.print(
        "trials: " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(state.trials_by_state.items()))
    )
    console.print(
        "by operation: " + ", ".join(f"{k} {v}" for k, v in sorted(state.trials_by_operation.items()))
    )
    for label, row in (("best of record", state.best_of_record), ("best seen", state.best_seen)):
        if row is not None:
            std = f" ± {row.val_bpb_std:.4f}" if row.val_bpb_std is not None else ""
            console.print(
                f"{label}: trial {row.trial} [bold]{row.val_bpb:.4f}[/]{std} bpb ({row.seeds} seed(s))"
            )
    if (row := state.best_self_reported) is not None:
        console.print(
            f"best self-reported: trial {row.trial} {row.val_bpb:.4f} bpb, by its own log (run as "
            "published; not recomputed, never a parent)"
        )
    trials_cap = f" of {state.max_trials}" if state.max_trials is not None else ""
    usd_cap = f" of ${state.max_llm_usd:.2f}" if state.max_llm_usd is not None else ""
    console.print(f"budget: {state.trials_used} trials{trials_cap} · LLM ${state.llm_usd:.2f}{usd_cap}")
    if state.first_started and state.last_completed:
        hours = (state.last_completed - state.first_started).total_seconds() / 3600
        console.print(
            f"time: {state.first_started:%Y-%m-%d %H:%M} → {state.last_completed:%H:%M} ({hours:.2f} h)"
        )
    console.print(
        f"queue: {len(state.pending_requests)} request(s), {state.waiting_requeues} re-queued trial(s)"
    )
    for request in state.pending_requests:
        console.print(escape(f"  {request.id} {request.summary()}"), highlight=False)
    console.print(
        f"re-runs: {state.reruns} · given up: {state.reruns_given_up} "
        f"(a trial whose run is lost is re-run up to {state.max_reruns} times)"
    )
    who = f"controller pid {state.controller_pid}" if state.controller_pid else "no controller running here"
    console.print(f"workers: {who}; {len(state.running)} trial(s) running")
    for run in state.running:
        console.print(
            escape(f"  trial {run.trial} {run.operation} [{run.tier}] {run.hypothesis[:80]}"), highlight=False
        )


def leaderboard(
    campaign: CampaignArg,
    as_json: JsonOption = False,
    tier: Annotated[str | None, typer.Option(help="tier to rank (default: the explore tier)")] = None,
    limit: Annotated[int, typer.Option(help="rows to show; 0 for all")] = 20,
    show_all: Annotated[bool, typer.Option("--all", help="also over-size and suspicious ones")] = False,
) -> None:
    """Feasible candidates ranked by BPB, with seeds, deltas, bytes, times and hypotheses."""
    from controller.review.views import leaderboard as rank

    rows = rank(_open(campaign), tier=tier, limit=limit or None, include_ineligible=show_all)
    if as_json:
        _print_json([row.model_dump(mode="json") for row in rows])
        return
    table = Table(title=f"leaderboard ({rows[0].tier if rows else tier or 'explore'} tier)")
    columns = ("#", "trial", "bpb", "± std", "seeds", "Δ parent", "Δ seed", "bytes", "headroom")
    for column in (*columns, "train s", "eval s", "steps", "verified", "confirmed"):
        table.add_column(column, no_wrap=True, justify="right", min_width=len(column))
    table.add_column("hypothesis", overflow="fold", ratio=1)
    for r in rows:
        if r.self_reported:
            flag = " (self-reported)"
        else:
            flag = "" if r.eligible else f" ({r.status}{', suspicious' if r.suspicious else ''})"
        table.add_row(
            str(r.rank),
            str(r.trial),
            f"{r.val_bpb:.4f}{flag}",
            _num(r.val_bpb_std, ".4f"),
            str(r.seeds),
            _num(r.delta_parent_bpb, "+.4f"),
            _num(r.delta_seed_bpb, "+.4f"),
            _num(r.artifact_bytes, ","),
            _num(r.headroom_bytes, ","),
            _num(r.train_seconds, ".1f"),
            _num(r.eval_seconds, ".1f"),
            r.steps.label if r.steps.comparable else f"[yellow]{r.steps.label}[/]",
            "yes" if r.verified else "",
            "yes" if r.confirmed else "",
            escape(_operation_mark(r) + r.hypothesis[:70]),
        )
    console.print(table)
    if any(not r.steps.comparable for r in rows):
        from controller.review.steps import LEGEND

        console.print(f"[yellow]{LEGEND}[/]", highlight=False)


def _operation_mark(row) -> str:
    """Stacks and ablations named in the leaderboard: what they combine or leave out."""
    if row.operation == "stack":
        second = f" + {row.second_parent_trial}" if row.second_parent_trial is not None else ""
        return f"[stack {row.parent_trial}{second}] "
    if row.operation == "ablate":
        return f"[ablation of {row.parent_trial}] "
    return f"[superseded by {row.superseded_by}] " if row.superseded_by is not None else ""


def _print_diff(text: str) -> None:
    """The diff in colour, long lines left whole (soft wrap) so nothing is cut off."""
    if not text:
        console.print("[dim](no diff)[/]")
        return
    for line in text.splitlines():
        style = None
        if line.startswith(("+++", "---", "diff ", "index ")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        console.print(line, style=style, highlight=False, markup=False, soft_wrap=True)


def show(
    campaign: CampaignArg,
    trial: Annotated[int, typer.Argument(help="trial number")],
    as_json: JsonOption = False,
    log_lines: Annotated[int, typer.Option(help="lines of each log to show")] = 40,
) -> None:
    """One trial: hypothesis, rationale, lineage, metrics, knobs, the diff against its parent, log tail."""
    from controller.review.views import trial_detail

    detail = trial_detail(_open(campaign), trial, log_lines=log_lines)
    if as_json:
        _print_json(detail.model_dump(mode="json"))
        return
    console.print(f"[bold]trial {detail.trial}[/] · {detail.operation} · tier {detail.tier} · {detail.state}")
    console.print(f"[bold]hypothesis:[/] {escape(detail.hypothesis)}", highlight=False)
    if detail.rationale:
        console.print(f"[bold]rationale:[/] {escape(detail.rationale)}", highlight=False)
    if detail.request_id:
        console.print(f"request: {detail.request_id}")
    chain = " → ".join(f"{t}" + (f" ({b:.4f})" if b is not None else "") for t, _, b in detail.lineage)
    console.print(f"lineage: {chain or 'not recorded'}")
    if detail.second_parent_trial is not None:
        console.print(
            f"parents: {detail.parent_trial} (the program replayed onto) + {detail.second_parent_trial} "
            "(the win whose change was replayed)"
        )
    if detail.ablated_part:
        part = escape(detail.ablated_part)
        console.print(f"ablated: {part} of trial {detail.parent_trial}'s change", highlight=False)
    if detail.superseded_by is not None:
        console.print(
            f"superseded by trial {detail.superseded_by}: its ablation without a part that carries no gain"
        )
    std = f" ± {detail.val_bpb_std:.4f}" if detail.val_bpb_std is not None else ""
    bpb = (
        f"{detail.val_bpb:.4f}{std} bpb over {len(detail.seed_bpbs)} seed(s)"
        + (" (self-reported: the program's own log, not recomputed)" if detail.self_reported else "")
        if detail.val_bpb
        else "no score"
    )
    console.print(escape(f"status: {detail.status} {detail.status_reason}".rstrip()), highlight=False)
    console.print(
        f"metrics: {bpb} · bytes {_num(detail.artifact_bytes, ',')} · train {_num(detail.train_seconds, '.1f')} s"
        f" · eval {_num(detail.eval_seconds, '.1f')} s"
        + (" · verified" if detail.verified else "")
        + (" · confirmed" if detail.confirmed else "")
    )
    if detail.steps.reached is not None:
        style = None if detail.steps.comparable else "yellow"
        console.print(f"steps: {escape(detail.steps.explain())}", style=style, highlight=False)
    if detail.adoption:
        console.print(f"adoption: {escape(detail.adoption)}", highlight=False)
    if detail.smoke_skipped:
        console.print(f"[yellow]smoke:[/] {escape(detail.smoke_skipped)}", highlight=False)
    if detail.failed_check:
        console.print(f"[red]failed integrity check:[/] {escape(detail.failed_check)}")
    for line in detail.integrity:
        console.print(f"integrity: {escape(line)}", highlight=False)
    if detail.suspicious:
        console.print(f"[yellow]suspicious:[/] {escape(str(detail.suspicious))}")
    if detail.knob_values:
        console.print("knobs: " + " ".join(f"{k}={v}" for k, v in sorted(detail.knob_values.items())))
    console.rule(f"diff against trial {detail.parent_trial}" if detail.parent_trial is not None else "root")
    _print_diff(detail.diff)
    if detail.log_tail:
        console.rule("log tail")
        console.print(detail.log_tail, highlight=False, markup=False)


def diff(
    campaign: CampaignArg,
    a: Annotated[int, typer.Argument(help="from this trial")],
    b: Annotated[int, typer.Argument(help="to this trial")],
) -> None:
    """The diff between any two candidates' programs."""
    from controller.review.views import diff_between

    _print_diff(diff_between(_open(campaign), a, b))


def _check_parent(campaign: Path, parent: int | None) -> None:
    if parent is not None:
        _open(campaign).candidate(parent)  # raises with a hint when it is not a scored trial


@hypothesis_app.command("add")
def hypothesis_add(
    campaign: CampaignArg,
    text: Annotated[str | None, typer.Argument(help="the idea, in words")] = None,
    file: Annotated[Path | None, typer.Option(help="a Markdown file; each heading starts an idea")] = None,
    parent: Annotated[int | None, typer.Option(help="trial to build on (default: the best)")] = None,
) -> None:
    """Queue an idea for the agent to implement next."""
    from controller.search.requests import add_hypothesis, hypotheses_from_markdown

    if (text is None) == (file is None):
        raise typer.BadParameter("give the idea as TEXT or with --file, not both or neither")
    ideas = [text] if text is not None else hypotheses_from_markdown(_read(file))
    config = load(campaign)
    _check_parent(campaign, parent)
    for idea in ideas:
        request_id = add_hypothesis(config.run_dir, idea or "", parent)
        console.print(escape(f"queued {request_id}: {(idea or '').splitlines()[0][:100]}"), highlight=False)


def _read(path: Path | None) -> str:
    assert path is not None
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}") from exc


@hypothesis_app.command("list")
def hypothesis_list(campaign: CampaignArg, as_json: JsonOption = False) -> None:
    """Every queued idea, with the trials it produced and their outcome."""
    from controller.search.requests import RequestKind, load_requests, outcome_of, trials_of

    config = load(campaign)
    requests = [r for r in load_requests(config.run_dir) if r.kind is RequestKind.HYPOTHESIS]
    trials = _open(campaign).trials if (config.run_dir / "repo").exists() else ()
    if as_json:
        rows = [
            {**r.model_dump(mode="json"), "trials": [t.number for t in trials_of(r.id, trials)]}
            for r in requests
        ]
        _print_json(rows)
        return
    table = Table(title="hypotheses")
    for column in ("id", "parent", "idea", "outcome"):
        table.add_column(column, overflow="fold")
    for r in requests:
        parent = str(r.parent_trial) if r.parent_trial is not None else "best"
        table.add_row(r.id, parent, escape(r.text.splitlines()[0][:80]), escape(outcome_of(r, trials)))
    console.print(table)


def enqueue(
    campaign: CampaignArg,
    knob: Annotated[list[str], typer.Option(help="NAME=VALUE, repeatable")],
    parent: Annotated[int | None, typer.Option(help="trial whose program to run (default: the best)")] = None,
) -> None:
    """Queue exact knob settings for a run (no code change)."""
    from controller.search.requests import add_knobs

    values = dict(_split_knob(item) for item in knob)
    config = load(campaign)
    _check_knobs(campaign, config, values, parent)
    request_id = add_knobs(config.run_dir, values, parent)
    console.print(f"queued {request_id}: " + " ".join(f"{k}={v}" for k, v in values.items()), highlight=False)


def _split_knob(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name.strip():
        raise typer.BadParameter(f"--knob {item!r}: write NAME=VALUE, e.g. --knob MATRIX_LR=0.03")
    return name.strip(), value.strip()


def _check_knobs(campaign: Path, config, values: dict[str, str], parent: int | None) -> None:
    """Names and values must fit the knob table of the program they will run on."""
    from sandbox.knobs import KnobTableError, parse_knob_table

    if (config.run_dir / "repo" / ".git").is_dir():
        review = _open(campaign)
        target = review.candidate(parent) if parent is not None else review.archive.best(review.explore_tier)
        source = review.store.files_at(target.commit)[config.campaign.seed_program.name] if target else None
    else:
        source = None
    source = source or config.campaign.seed_program.read_text(encoding="utf-8")
    try:
        knobs = {k.name: k for k in parse_knob_table(source)}
    except KnobTableError as exc:
        raise typer.BadParameter(f"the program has no usable knob table: {exc}") from exc
    for name, text in values.items():
        if name not in knobs:
            raise typer.BadParameter(
                f"--knob {name}: the program declares no such knob; it has {sorted(knobs)}"
            )
        try:
            knobs[name].parse(text)
        except ValueError as exc:
            raise typer.BadParameter(f"--knob {name}={text}: {exc}") from exc


def confirm(
    campaign: CampaignArg,
    trial: Annotated[int, typer.Argument(help="candidate to re-run")],
    seeds: Annotated[int, typer.Option(help="how many more seeds")] = 2,
) -> None:
    """Queue more seeds of a candidate; the campaign runs them before anything else."""
    from controller.search.requests import add_confirm

    config = load(campaign)
    _check_parent(campaign, trial)
    request_id = add_confirm(config.run_dir, trial, seeds)
    console.print(
        f"queued {request_id}: {seeds} more seed(s) of trial {trial}; they run first when "
        f"`autogolf run {campaign}` runs (a running controller picks them up next)"
    )


def export(
    campaign: CampaignArg,
    trial: Annotated[int, typer.Argument(help="candidate to export")],
    to: Annotated[Path, typer.Option("--to", help="the records folder to create")],
    author: Annotated[str | None, typer.Option()] = None,
    github_id: Annotated[str | None, typer.Option()] = None,
    name: Annotated[str | None, typer.Option()] = None,
    blurb: Annotated[str | None, typer.Option()] = None,
    date: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default: today)")] = None,
    hardware: Annotated[str | None, typer.Option(help='e.g. "8xH100 SXM"')] = None,
    pytorch_version: Annotated[str | None, typer.Option()] = None,
    base_pr: Annotated[str | None, typer.Option(help="the record PR this builds on")] = None,
    self_extracting: Annotated[
        bool,
        typer.Option(
            "--self-extracting",
            help="ship train_gpt.py LZMA-compressed (fewer code bytes), checked to run to the same score",
        ),
    ] = False,
) -> None:
    """Write a records folder: train_gpt.py, every seed's log, submission.json and README.md."""
    from controller.review.export import SubmissionInfo, export_candidate

    info = SubmissionInfo(author, github_id, name, blurb, date, hardware, pytorch_version, base_pr)
    if self_extracting:
        console.print("checking the self-extracting program: one run of each form on the explore tier")
    submission = export_candidate(_open(campaign), trial, to, info, self_extracting=self_extracting)
    std = f" ± {submission.val_bpb_std:.4f}" if submission.val_bpb_std is not None else ""
    console.print(
        f"exported trial {trial} to {to}: {submission.val_bpb:.4f}{std} bpb, {len(submission.seeds)} seed(s)"
    )


def report(
    campaign: CampaignArg,
    out: Annotated[Path | None, typer.Option(help="HTML file (default: <run folder>/report.html)")] = None,
) -> None:
    """Write a self-contained HTML report: charts, lineage, operations, spend, leaderboard and diffs."""
    from controller.review.report import write_report

    review = _open(campaign)
    path = write_report(review, out or review.run_dir / "report.html")
    console.print(f"report: {path.resolve().as_uri()}")


def dashboard(
    campaign: CampaignArg,
    port: Annotated[int, typer.Option()] = 8080,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
) -> None:
    """Start optuna-dashboard on the campaign's study; each trial's note holds its hypothesis and diff."""
    config = load(campaign)
    command = ["optuna-dashboard", config.storage_url, "--port", str(port), "--host", host]
    executable = shutil.which("optuna-dashboard")
    if executable is None:
        console.print(
            "optuna-dashboard is not installed. Install it with:\n  pip install optuna-dashboard\n"
            f"then run:\n  {' '.join(command)}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=1)
    console.print(f"optuna-dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C stops the dashboard, not with a traceback
        subprocess.run([executable, *command[1:]], check=False)
