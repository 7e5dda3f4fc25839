"""The ``autogolf`` command line (typer + rich)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Annotated

import typer

from controller.cli.findings import register as register_findings
from controller.cli.imports import register as register_imports
from controller.cli.review import register as register_review
from controller.cli.terminal import GolfCommands, console, load, say
from controller.workers.worker import register_worker

# GolfCommands turns any GolfError a command raises into "error: ... / hint: ..." and exit status 2.
app = typer.Typer(
    cls=GolfCommands, help="autogolf: an unattended research lab for Parameter Golf.", no_args_is_help=True
)
data_app = typer.Typer(help="Challenge-format data: fetch the official shards or build them from text.")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CAMPAIGN = REPO_ROOT / "experiments" / "demo.toml"


def _run_campaign(campaign: Path, config) -> None:
    from controller.cli.review import leaderboard
    from controller.search.loop import Controller
    from controller.search.workspace import open_workspace

    with open_workspace(config) as ws:
        say(f"campaign {config.campaign.name} in {ws.run_dir}")
        say(f"data: {ws.data.dataset_dir} · tokenizer {ws.data.tokenizer_path.name}")
        controller = Controller(ws, say=say)
        why = controller.run()
        say(f"campaign stopped: {why}")
        stats = controller.stats
        if stats.gave_up or stats.inert:
            say(
                f"proposals that never ran: {stats.gave_up} gave up, {stats.inert} of their replies sent back "
                "as behaviourally inert (the smoke run matched the parent's)"
            )
    leaderboard(campaign, limit=10)


@app.command()
def demo(
    resume: Annotated[
        bool, typer.Option(help="continue the previous demo campaign instead of starting over")
    ] = False,
) -> None:
    """Run the whole loop on CPU with the embedded corpus and offline proposers (a few minutes)."""
    config = load(DEMO_CAMPAIGN)
    if not resume and config.run_dir.exists():
        shutil.rmtree(config.run_dir)
    _run_campaign(DEMO_CAMPAIGN, config)


@app.command()
def run(campaign: Annotated[Path, typer.Argument(help="campaign file, e.g. experiments/demo.toml")]) -> None:
    """Start or resume a campaign. Ctrl-C once: finish running trials and stop; twice: kill them."""
    _run_campaign(campaign, load(campaign))


@data_app.command("fetch")
def data_fetch(
    dest: Annotated[Path, typer.Option(help="where datasets/ and tokenizers/ go")] = Path("data"),
    variant: Annotated[str, typer.Option(help="sp1024, sp4096 or sp8192")] = "sp1024",
    train_shards: Annotated[int, typer.Option(help="training shards of 10^8 tokens to fetch")] = 80,
) -> None:
    """Download the official shards and tokenizer from Hugging Face (resumable, headers verified)."""
    from datatools.prepare import fetch_official

    fetched = fetch_official(variant, dest, train_shards)
    console.print(f"dataset: {fetched.dataset_dir}\ntokenizer: {fetched.tokenizer_path}")


@data_app.command("build")
def data_build(
    inputs: Annotated[
        list[Path], typer.Argument(help=".txt or .jsonl files (with a 'text' field), or folders")
    ],
    dest: Annotated[Path, typer.Option(help="where datasets/ and tokenizers/ go")] = Path("data"),
    vocab_size: Annotated[int, typer.Option(help="SentencePiece vocabulary size")] = 1024,
    val_docs: Annotated[int, typer.Option(help="the first N documents form the validation split")] = 1000,
    name: Annotated[str, typer.Option(help="dataset name")] = "corpus",
) -> None:
    """Build a tokenizer and challenge-format shards from local text."""
    from datatools.prepare import build_from_files

    built = build_from_files(inputs, dest, vocab_size=vocab_size, val_docs=val_docs, name=name)
    console.print(
        f"dataset: {built.dataset_dir} ({built.train_tokens:,} train / {built.val_tokens:,} val tokens)\n"
        f"tokenizer: {built.tokenizer_path}"
    )


@data_app.command("demo")
def data_demo(vocab_size: Annotated[int, typer.Option(help="SentencePiece vocabulary size")] = 1024) -> None:
    """Download (once) the embedded Shakespeare corpus and build the demo shards."""
    from datatools.prepare import ensure_demo_data

    built = ensure_demo_data(vocab_size=vocab_size)
    console.print(f"dataset: {built.dataset_dir}\ntokenizer: {built.tokenizer_path}")


app.add_typer(data_app, name="data")
register_review(app)
register_findings(app)
register_imports(app)
register_worker(app)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    app()


if __name__ == "__main__":
    main()
