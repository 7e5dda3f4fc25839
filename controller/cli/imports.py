"""``autogolf seed`` and ``autogolf adopt``: a foreign program (a challenge record) as a new root, run as
published or ported to the run contract.

``adopt CAMPAIGN TRIAL`` ports the program of a trial that ran as published; ``adopt CAMPAIGN --from
<record folder | program>`` imports it first (as ``seed --from`` does, so it also runs as published,
for comparison) and queues its port after it. The port and its acceptance check are
controller.search.adoption's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from controller.cli.terminal import console, load
from controller.errors import ControllerError

CampaignArg = Annotated[Path, typer.Argument(help="campaign file")]


def register(app: typer.Typer) -> None:
    app.command()(seed)
    app.command()(adopt)


def seed(
    campaign: CampaignArg,
    program: Annotated[
        Path, typer.Option("--from", help="a program, or a challenge records folder, to import as a new root")
    ],
    title: Annotated[str, typer.Option(help="what the program is")] = "",
) -> None:
    """Import a program or a challenge record as a new root of the campaign.

    A program with a knob table is queued as it is. Anything else (a records folder, a
    self-extracting or exec-stub program, one without a table) is read by the importer: unwrapped,
    given a knob table from its published settings, and, without the run contract, run as published
    with its score self-reported. What it needs that this machine lacks is said first.
    """
    from controller.search.imports import image_needs, queue_record
    from controller.search.requests import add_seed, load_requests

    config = load(campaign)
    if program.is_file() and _has_knob_table(program):
        request_id = add_seed(config.run_dir, program, title)
    else:
        queued = queue_record(config.run_dir, program, title)
        request_id, record = queued.request_id, queued.record
        score = f", published {record.score.val_bpb:.4f} bpb" if record.score is not None else ""
        console.print(
            escape(
                f"read {record.name}: {record.wrapping.value.replace('_', '-')} program, {len(record.knobs)} knobs{score}"
            ),
            highlight=False,
        )
        if queued.table_added:
            console.print("gave it a knob table with its published settings as defaults", highlight=False)
        if queued.published:
            console.print(
                "it does not follow the run contract: it runs as published, its score self-reported "
                "(never a parent of record)",
                highlight=False,
            )
        for need in queued.missing:
            console.print(escape(f"needs {need.name}: {need.message}; {need.hint}"), highlight=False)
        if config.sandbox.backend == "docker" and (image := image_needs(record)):
            _say_image_needs(image)
    request = next(r for r in load_requests(config.run_dir) if r.id == request_id)
    console.print(escape(f"queued {request_id}: {request.summary()}"), highlight=False)


def _say_image_needs(image) -> None:
    from sandbox.backends.images import WHEELS_DIR, trainer_build_command

    for module in image.wheels:
        console.print(escape(f"the trainer image needs a wheel for {module}: put it in {WHEELS_DIR}"))
    command = trainer_build_command(pip_extra=image.pip, system_tools=image.tools)
    console.print(escape(f"then rebuild the trainer image: {' '.join(command)}"), highlight=False)


def _has_knob_table(program: Path) -> bool:
    try:
        source = program.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return True  # add_seed names the problem
    from controller.search.imports import has_knob_table

    return has_knob_table(source)


def adopt(
    campaign: CampaignArg,
    trial: Annotated[int | None, typer.Argument(help="a trial that ran as published")] = None,
    program: Annotated[
        Path | None, typer.Option("--from", help="a program or records folder to import and adopt")
    ] = None,
    title: Annotated[str, typer.Option(help="what the program is")] = "",
) -> None:
    """Port a challenge record to the run contract, so the search can grow from it.

    The port is accepted only when the harness's BPB equals the BPB the program prints in the same
    run ([search] adopt_bpb_tolerance); then it is an ordinary root."""
    from controller.search.requests import add_adopt, load_requests

    if (trial is None) == (program is None):
        raise typer.BadParameter("give either a TRIAL that ran as published or --from a program or record")
    config = load(campaign)
    if program is not None:
        source, name, seed_id, cuda, files = _import(config, program, title)
        request_id = add_adopt(
            config.run_dir, source, title or name, source_request=seed_id, needs_cuda=cuda, files=files
        )
    else:
        source, name, files = _published_program(campaign, config, trial)
        request_id = add_adopt(config.run_dir, source, title or name, trial=trial, files=files)
    request = next(r for r in load_requests(config.run_dir) if r.id == request_id)
    console.print(escape(f"queued {request_id}: {request.summary()}"), highlight=False)


def _import(config, program: Path, title: str) -> tuple[str, str, str, bool, dict[str, str]]:
    from controller.search.imports import needs_cuda, queue_record

    queued = queue_record(config.run_dir, program, title)
    record = queued.record
    if not queued.published:
        raise ControllerError(
            f"{program} already follows the run contract: there is nothing to adopt",
            hint=f"it was queued as a new root ({queued.request_id}); no adoption is needed",
        )
    console.print(
        escape(f"queued {queued.request_id}: {record.name} runs as published first (self-reported score)"),
        highlight=False,
    )
    for need in queued.missing:
        console.print(escape(f"needs {need.name}: {need.message}; {need.hint}"), highlight=False)
    source = (config.run_dir / "seeds" / f"{queued.request_id}.py").read_text(encoding="utf-8")
    return source, record.name, queued.request_id, needs_cuda(record), dict(record.siblings)


def _published_program(campaign: Path, config, trial: int) -> tuple[str, str, dict[str, str]]:
    import optuna

    from controller.review.views import Campaign

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    review = Campaign.open(load(campaign))
    candidate = review.candidate(trial)
    if not candidate.self_reported:
        raise ControllerError(
            f"trial {trial} already follows the run contract (it is scored by the harness)",
            hint="adopt a trial that ran as published: its leaderboard row says self-reported",
        )
    entry = config.campaign.seed_program.name
    files = dict(review.store.files_at(candidate.commit))
    source = files.pop(entry)
    return source, candidate.hypothesis or f"trial {trial}", files
