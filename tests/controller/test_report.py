"""The HTML report (controller.review.report): its content, and that headless Chromium renders it cleanly."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from controller.review.report import render_report, write_report
from controller.review.views import Campaign, leaderboard
from tests.controller.test_review import build_campaign

pytestmark = pytest.mark.slow  # the module's fixture runs a whole campaign (or Docker)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, tiny_data) -> Campaign:
    return Campaign.open(build_campaign(tmp_path_factory.mktemp("report"), tiny_data))


def test_report_links_every_ranked_candidate_to_its_diff(campaign):
    page = render_report(campaign)
    rows = leaderboard(campaign)
    for row in rows:
        assert f"href='#trial-{row.trial}'" in page and f'<details id="trial-{row.trial}">' in page
    mutated = next(t.number for t in campaign.trials if t.attrs.operation == "mutate")
    block = page.split(f'<details id="trial-{mutated}">', 1)[1].split("</details>", 1)[0]
    assert '<span class="add">+    Knob(&quot;SMOOTHING&quot;, float, 0.9' in block


def test_report_draws_the_charts_and_the_size_limit(campaign):
    page = render_report(campaign)
    assert page.count("<svg") == 3
    assert "limit 16,000,000 bytes" in page
    for title in ("BPB over trials", "Frontier over time", "Bytes vs BPB", "Lineage", "Operations", "Spend"):
        assert f"<h2>{title}</h2>" in page
    scored = [c for c in campaign.archive if c.val_bpb is not None]
    assert len(re.findall(r"<circle [^>]*><title>trial \d+ \(", page)) == len(scored)
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_report_escapes_hypotheses(campaign, monkeypatch):
    from controller.store.archive import Archive

    victim = leaderboard(campaign)[0].trial
    from dataclasses import replace

    hostile = Archive(
        [
            replace(c, hypothesis="<script>alert(1)</script>") if c.trial == victim else c
            for c in campaign.archive
        ]
    )
    view = Campaign(campaign.config, campaign.run_dir, campaign.store, campaign.trials, hostile)
    page = render_report(view)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium_without_console_errors(campaign, tmp_path):
    page = write_report(campaign, tmp_path / "report.html")
    shot = tmp_path / "report.png"
    completed = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            "--window-size=1280,2000",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = completed.stdout + completed.stderr
    assert completed.returncode == 0, log[-2000:]
    console_errors = [
        line for line in log.splitlines() if "Uncaught" in line or ("CONSOLE" in line and "ERROR" in line)
    ]
    assert console_errors == []
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a blank page compresses to ~5 kB
