"""Findings (controller.search.findings): what the campaign learned, derived from a study and a git
store written through their public APIs the way the recorder writes them, and derived again, the
same, after both are reopened."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.prompt import PromptTemplates, build_prompt
from agent.proposal import ProposalContext
from controller.cli.app import app
from controller.config import CampaignConfig, load_campaign
from controller.review.findings import campaign_findings
from controller.review.report import render_report
from controller.review.views import Campaign
from controller.search.findings import Verdict, agent_findings, derive_findings
from controller.store.archive import Candidate, Operation
from controller.store.gitstore import GitStore
from controller.store.records import candidate_attrs, candidate_from_result, result_note
from controller.store.study import CampaignStudy
from controller.store.trial_attrs import TrialAttrs
from sandbox.spec import ArtifactBytes, CurvePoint, RunResult, RunStatus

SEED_SOURCE = 'KNOBS = []\nWIDTH = 512\nprint("train")\n'


def write_config(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "campaign.toml").write_text(
        """
[campaign]
name = "findings"
runs_dir = "runs"
[data]
embedded = true
[tiers.proxy]
device = "cpu"
train_seconds = 30
eval_seconds = 30
seeds_to_confirm = 2
min_delta_nats = 0.0
p_value = 0.5
[search]
explore_tier = "proxy"
confirm_tier = "proxy"
preflight_smoke = false
""",
        encoding="utf-8",
    )
    return root / "campaign.toml"


def curve(step_ms: float, losses: list[float]) -> list[CurvePoint]:
    """Points every 10 steps from step 10, ``step_ms`` apart per step after a 500 ms start."""
    return [
        CurvePoint(step=10 * (i + 1), train_loss=loss, elapsed_ms=500 + step_ms * 10 * (i + 1))
        for i, loss in enumerate(losses)
    ]


@dataclass
class Campaigner:
    """Writes trials as controller.search.recorder does: a commit with its RunResult note, then the tell."""

    config: CampaignConfig
    study: CampaignStudy
    store: GitStore
    candidates: dict[int, Candidate] = field(default_factory=dict)

    def explore(
        self,
        parent: int | None,
        bpb: float,
        *,
        hypothesis: str,
        width: int = 512,
        model_bytes: int = 10_000,
        step_ms: float = 40.0,
        operation: Operation = Operation.MUTATE,
        attrs: TrialAttrs | None = None,
        promoted: bool = False,
    ) -> int:
        source = self.candidates[parent] if parent is not None else None
        handle = self.study.ask(source, [], {}, tier="proxy", operation=operation, attrs=attrs)
        result = RunResult(
            status=RunStatus.OK,
            val_bpb=bpb,
            val_loss=bpb * 0.7,
            artifact=ArtifactBytes(code=len(SEED_SOURCE), model=model_bytes),
            train_seconds=20.0,
            steps=40,
            steps_planned=40,
            curve=curve(step_ms, [4.0, 3.5, 3.2, 3.0]),
        )
        files = {"train_gpt.py": SEED_SOURCE.replace("512", str(width))} if width != 512 else None
        commit = self.store.record(
            trial=handle.number,
            parent_commit=source.commit if source else self.store.seed_commit,
            files=files,
            message_title=hypothesis,
            message_body="",
            trailers={"Golf-Parent": str(parent)},
            note=result_note(result, {"trial": handle.number}),
        )
        candidate = candidate_from_result(
            trial=handle.number,
            commit=commit,
            parent_trial=parent,
            tier="proxy",
            operation=operation,
            hypothesis=hypothesis,
            result=result,
            knob_values={"TRAIN_BATCH_TOKENS": "8192"},
        )
        told = TrialAttrs(candidate=candidate_attrs(candidate), val_bpb=bpb, val_loss=bpb * 0.7)
        self.study.tell(handle, bpb, {}, told.updated(promoted=True) if promoted else told)
        self.candidates[handle.number] = candidate
        return handle.number

    def confirm(
        self, of: int, bpb: float | None, *, promotes: int | None = None, running: bool = False
    ) -> int:
        """A confirm run adding a seed to ``of`` (explore and confirm tier are the same here)."""
        handle = self.study.ask(self.candidates[of], [], {}, tier="proxy", operation=Operation.CONFIRM)
        if running:
            return handle.number
        attrs = TrialAttrs(seed=1338, confirm_of=of, verifies=of)
        if bpb is None:
            self.study.fail(handle, "CUDA error: out of memory", attrs.updated(status=RunStatus.CRASHED))
            return handle.number
        told = attrs.updated(val_bpb=bpb, val_loss=bpb * 0.7, status=RunStatus.OK)
        self.study.tell(handle, bpb, {}, told.updated(promotes=promotes) if promotes is not None else told)
        return handle.number


def open_campaigner(toml: Path) -> Campaigner:
    config = load_campaign(toml)
    store = GitStore(config.run_dir / "repo")
    store.init({"train_gpt.py": SEED_SOURCE})
    return Campaigner(config, CampaignStudy.from_config(config), store)


@pytest.fixture
def campaign(tmp_path) -> Campaigner:
    """Seed 0; trial 1 (wider, slower, bigger) confirmed over it; trial 3 refuted by the Welch test;
    trial 9 refuted by a crashed confirm run; trial 11 still being confirmed; a stack and an
    ablation of trial 1; trial 2 never challenged (worse than its parent)."""
    c = open_campaigner(write_config(tmp_path))
    c.explore(None, 1.50, hypothesis="seed program", operation=Operation.SEED, promoted=True)  # 0
    c.explore(0, 1.40, hypothesis="Widen the model", width=640, model_bytes=10_500, step_ms=45.0)  # 1
    c.confirm(1, 1.41)  # 2
    c.confirm(0, 1.52, promotes=1)  # 3
    c.explore(0, 1.55, hypothesis="Shrink the model", width=256)  # 4
    c.explore(0, 1.45, hypothesis="Narrow the model", width=480)  # 5
    c.confirm(5, 1.47)  # 6: 1.46 mean vs trial 1's 1.405: refuted
    c.explore(1, 1.39, hypothesis="Stack", operation=Operation.STACK, attrs=TrialAttrs(second_parent=5))  # 7
    c.explore(
        1,
        1.44,
        hypothesis="Ablate",
        operation=Operation.ABLATE,
        attrs=TrialAttrs(ablated_part="the wider MLP"),
    )  # 8
    c.explore(1, 1.38, hypothesis="Deeper", width=700)  # 9
    c.confirm(9, None)  # 10: crashed
    c.explore(1, 1.30, hypothesis="Much deeper", width=900)  # 11
    c.confirm(11, None, running=True)  # 12: still running
    return c


def test_findings_are_derived_from_the_study_and_the_git_notes(campaign):
    findings = derive_findings(campaign.config, campaign.study.trials(), campaign.store)

    assert [(f.trial, f.verdict) for f in findings] == [
        (1, Verdict.CONFIRMED),
        (5, Verdict.REFUTED),  # its first run looked better (-0.05) than trial 9's (-0.02)
        (9, Verdict.REFUTED),
    ]
    wide, narrow, deeper = findings
    assert wide.hypothesis == "Widen the model" and wide.incumbent_trial == 0 and wide.decided_by == 3
    assert wide.delta_bpb == pytest.approx(1.405 - 1.51)
    assert wide.delta_std_bpb == pytest.approx(((0.01**2 / 2 + 0.02**2 / 2) / 2) ** 0.5)
    assert wide.seeds == 2 and wide.incumbent_seeds == 2 and wide.p_value < 0.5
    assert wide.explore_delta_bpb == pytest.approx(-0.10)
    assert wide.bytes_delta == 500  # from the candidates' measured artifact bytes
    assert wide.ms_per_step == pytest.approx(45.0) and wide.ms_per_step_delta == pytest.approx(5.0)  # notes
    assert wide.change == "code +1 −1 lines"  # from the commit's diff against its parent
    follow = {f.trial: f for f in wide.follow_ups}
    assert follow[7].description == "stacked with trial 5" and follow[7].delta_bpb == pytest.approx(-0.01)
    assert follow[8].description == "without: the wider MLP" and follow[8].status == "ok"
    assert [f.trial for f in narrow.follow_ups] == [7]  # the stack's second parent
    assert narrow.incumbent_trial == 1 and narrow.delta_bpb == pytest.approx(1.46 - 1.405)
    assert narrow.reason.startswith("Welch test failed")
    assert deeper.reason == "confirm run 10 crashed: CUDA error: out of memory" and deeper.decided_by == 10
    assert deeper.seeds == 1 and deeper.delta_std_bpb is None and deeper.p_value is None


def test_findings_rebuild_identically_after_reopening(campaign, tmp_path):
    before = derive_findings(campaign.config, campaign.study.trials(), campaign.store)
    campaign.store.close()

    config = load_campaign(tmp_path / "campaign.toml")
    reopened = Campaign.open(config)  # a fresh study connection and git store, as after a restart
    assert campaign_findings(reopened) == before
    assert derive_findings(config, CampaignStudy.from_config(config).trials(), reopened.store) == before


def test_a_challenge_still_running_is_no_finding_until_its_runs_end(campaign):
    trials = campaign.study.trials()
    assert 11 not in {f.trial for f in derive_findings(campaign.config, trials, campaign.store)}
    # Without trial 6 (trial 5's only confirm run) trial 5 was never challenged: no finding either.
    without = [t for t in trials if t.number != 6]
    assert 5 not in {f.trial for f in derive_findings(campaign.config, without, campaign.store)}


def test_the_findings_command_lists_them(campaign, tmp_path):
    toml = str(tmp_path / "campaign.toml")
    result = CliRunner().invoke(app, ["findings", toml, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["trial"], r["verdict"]) for r in rows] == [(1, "confirmed"), (5, "refuted"), (9, "refuted")]
    assert rows[0]["follow_ups"][1]["description"] == "without: the wider MLP"

    refuted = CliRunner().invoke(app, ["findings", toml, "--json", "--verdict", "refuted"])
    assert [r["trial"] for r in json.loads(refuted.output)] == [5, 9]
    table = CliRunner().invoke(app, ["findings", toml], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "Widen the model" in table.output and "confirmed" in table.output
    assert "Δ -0.1050 ± 0.0112 bpb over 2 seed(s) vs trial 0" in table.output


def test_the_report_shows_the_findings(campaign, tmp_path):
    page = render_report(Campaign.open(load_campaign(tmp_path / "campaign.toml")))
    section = page[page.index("<h2>Findings</h2>") :]
    assert "Widen the model" in section and "Welch test failed" in section
    assert "trial 8 without: the wider MLP: ok" in section


def test_the_agent_reads_the_findings_compactly_within_the_prompt_budget(campaign):
    findings = derive_findings(campaign.config, campaign.study.trials(), campaign.store)
    context = ProposalContext(files={"train_gpt.py": SEED_SOURCE}, findings=agent_findings(findings, 24))
    templates = PromptTemplates()
    prompt = build_prompt(context, templates, token_budget=100_000)
    assert (
        "- [confirmed] Widen the model (code +1 −1 lines): Δ -0.1050 ± 0.0112 bpb over 2 seed(s) (proxy) · bytes +500 · "
        "step +5.0 ms (stacked with trial 5: ok -0.0100; without: the wider MLP: ok +0.0400)"
    ) in prompt.user
    assert (
        "- [refuted] Deeper (code +1 −1 lines): Δ" in prompt.user and "confirm run 10 crashed" in prompt.user
    )

    tight = build_prompt(context, templates, token_budget=prompt.estimated_tokens - 5)
    assert tight.omitted == {"findings": 1}
    assert "Widen the model" in tight.user and "- [refuted] Deeper" not in tight.user  # least telling last
    assert "(1 less telling findings omitted to fit the prompt budget)" in tight.user


@pytest.mark.slow
def test_a_campaign_run_by_the_loop_records_its_confirmed_finding_and_tells_the_agent(
    make_campaign, run_campaign, tmp_path
):
    from controller.search.context import build_context
    from controller.search.workspace import open_workspace
    from tests.controller.campaigns import knob_line
    from tests.controller.test_confirm import poorly_smoothed_seed

    toml = make_campaign(
        # Later lines are worse than any parent, so only trial 1 challenges the seed (as in test_confirm).
        replay=[knob_line("much less smoothing", SMOOTHING=0.3)]
        + [knob_line(f"smoothing {s}", SMOOTHING=s) for s in (50.0, 60.0, 70.0)],
        seed_program=poorly_smoothed_seed(tmp_path / "seed"),
        proxy={"seeds_to_confirm": 2, "min_delta_nats": 0.0, "p_value": 0.5},
        max_trials=6,
    )
    run_campaign(toml)
    config = load_campaign(toml)
    findings = campaign_findings(Campaign.open(config))
    assert [(f.trial, f.verdict, f.incumbent_trial) for f in findings] == [(1, Verdict.CONFIRMED, 0)]
    # The sampled value is baked into the knob table's default, so the commit changes that line too.
    assert findings[0].change == "knobs SMOOTHING 10.0 → 0.3; code +1 −1 lines" and findings[0].seeds == 2

    with open_workspace(config, progress=False) as ws:
        archive = Campaign.open(config).archive
        context = build_context(
            store=ws.store,
            archive=archive,
            parent=archive.get(1),
            entry=ws.entry,
            operation=Operation.MUTATE,
            tier="proxy",
            workspace=ws,
        )
    assert [f.hypothesis for f in context.findings] == ["much less smoothing"]
    assert context.parent.train_budget_seconds == 20 and context.parent.grandparent_trial == 0
    assert context.parent.curve_vs_grandparent and context.parent.steps is not None
    # Re-deriving after the controller is gone gives the same list.
    assert campaign_findings(Campaign.open(load_campaign(toml))) == findings
