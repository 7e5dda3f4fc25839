"""A program shipped self-extracting, as the records did to save code bytes, and proof that it is the
same program.

The challenge counts the script's bytes as shipped, so records compressed their source and shipped
a two-line wrapper that decompresses and runs it. ``sandbox.code_bytes.self_extracting`` writes such a
wrapper (LZMA, base85; the harness counts its size);
``check_wrapped`` reads it back with the importer's unwrapper (which never runs it) and requires the
readable source byte for byte; ``run_both`` runs the readable and the wrapped program through the
sandbox on the same tier, data and seed and requires the same score.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from controller.config import CampaignConfig
from controller.errors import ControllerError
from controller.search.trial import BASE_SEED, knob_overrides
from controller.search.workspace import resolve_data
from importer import RecordImportError, unwrap_text
from sandbox import RunSpec, RunStatus
from sandbox import run as sandbox_run
from sandbox.knobs import parse_knob_table


def check_wrapped(source: str, wrapper: str) -> None:
    """Raise :class:`ControllerError` unless ``wrapper`` unwraps to exactly ``source``."""
    try:
        unwrapped = unwrap_text(wrapper, filename="train_gpt.py").source
    except RecordImportError as exc:
        raise ControllerError(f"the self-extracting program does not unwrap: {exc}") from exc
    if unwrapped != source:
        raise ControllerError("the self-extracting program unwraps to other source than the readable one")


@dataclass(frozen=True)
class SameResult:
    readable_bpb: float
    wrapped_bpb: float


def run_both(config: CampaignConfig, source: str, wrapper: str, entry: str) -> SameResult:
    """Run the readable and the wrapped program on the campaign's explore tier (same data, knobs and
    seed) and require the same val_bpb. Raises :class:`ControllerError` when either run fails or the
    scores differ."""
    tier_name = config.search.explore_tier
    tier = config.tiers.get(tier_name)
    env = knob_overrides(tier, tier_name, parse_knob_table(source, filename=entry))
    data = resolve_data(config, progress=False)
    scores: list[float] = []
    with tempfile.TemporaryDirectory(prefix="autogolf-wrap-") as scratch:
        for name, text in (("readable", source), ("wrapped", wrapper)):
            program = Path(scratch) / name / "program"
            program.mkdir(parents=True)
            (program / entry).write_text(text, encoding="utf-8")
            result = sandbox_run(
                RunSpec(
                    program_dir=program,
                    entry=entry,
                    knobs=env,
                    seed=BASE_SEED,
                    data=data,
                    limits=tier.limits(),
                    out_dir=Path(scratch) / name / "run",
                    backend=config.sandbox.backend,
                    docker_image=config.sandbox.image,
                    eval_seq_len=tier.harness_eval_seq_len(),
                )
            )
            if result.status is not RunStatus.OK or result.val_bpb is None:
                raise ControllerError(f"the {name} program's check run failed: {result.reason}")
            scores.append(result.val_bpb)
    if scores[0] != scores[1]:
        raise ControllerError(
            f"the wrapped program scored {scores[1]:.8f}, the readable one {scores[0]:.8f}",
            hint="export without --self-extracting",
        )
    return SameResult(*scores)
