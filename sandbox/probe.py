"""Running a scored run's integrity probes: write each probe's stream, run the program's eval phase on
it in a fresh sandbox, and judge what it wrote (``sandbox.integrity`` draws and judges the probes).

Every run gets the prefix probe. A run asked for the full probe (``IntegritySettings.probe``) gets it
after the prefix one: the prefix probe catches a look-ahead at the stream's statistics (its stream is a
different tenth of the text), the full one a program honest on the first tenth only.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sandbox.backends.base import Backend, PhaseInvocation
from sandbox.errors import HarnessError
from sandbox.integrity import IntegrityFailure, judge_probe, plan_probe
from sandbox.outputs import OutputError, read_nll
from sandbox.phases import Account, check_phase, execute
from sandbox.scoring import TokenBytes
from sandbox.shards import write_shard
from sandbox.spec import IntegrityCheck, Phase, ProbeKind, RunSpec, RunStatus


@dataclass(frozen=True)
class ProbeFiles:
    """What a probe's eval phase reads instead of the validation shards, and where it writes."""

    name: str  # its GOLF_OUT folder and log name under the run's out_dir
    shards: tuple[Path, ...]
    positions: Path


MakeInvocation = Callable[..., PhaseInvocation]


def probe_names(kind: ProbeKind) -> tuple[str, str, str]:
    """(GOLF_OUT folder, data folder, positions file) of a probe under the run's out_dir."""
    name = f"probe-{kind}"
    return name, f"{name}-data", f"{name}-positions.i64"


def run_probes(
    spec: RunSpec,
    invocation: MakeInvocation,
    backend: Backend,
    scored_nll_path: Path,
    scored_nll: np.ndarray,
    val_tokens: np.ndarray,
    train_files: list[Path],
    token_bytes: TokenBytes,
    account: Account,
) -> None:
    """Run the probes the spec asks for, adding each report to ``account.probes``; stop at a failure."""
    kinds = [ProbeKind.PREFIX] + ([ProbeKind.FULL] if spec.integrity.probe is ProbeKind.FULL else [])
    scored_log = account.log_path
    for kind in kinds:
        out = Path(spec.out_dir)
        name, data_name, positions_name = probe_names(kind)
        try:
            plan = plan_probe(
                scored_nll_path,
                val_tokens,
                spec.eval_seq_len,
                spec.integrity,
                token_bytes.vocab_size,
                kind=kind,
                train_files=train_files,
                salt=secrets.token_bytes(32),
            )
        except ValueError as exc:  # a validation split of two targets or fewer
            raise HarnessError(
                f"cannot run the integrity probe: {exc}", hint="use a longer validation split"
            ) from exc
        (out / data_name).mkdir()
        shard = out / data_name / "fineweb_val_000000.bin"
        write_shard(shard, plan.tokens)
        plan.positions.tofile(out / positions_name)
        inv = invocation(Phase.EVAL, probe=ProbeFiles(name, (shard,), out / positions_name))
        outcome = execute(backend, inv, None, account)
        check_phase(
            outcome, inv, account, name=f"integrity probe's eval ({kind})", check=IntegrityCheck.PROBE
        )
        if account.failed:
            return  # its log is the one to read
        try:
            probe_nll = read_nll(
                inv.out_dir / "val_nll.f32",
                num_val_tokens=int(plan.tokens.size),
                eval_seq_len=spec.eval_seq_len,
            )
            report = judge_probe(
                plan,
                scored_nll,
                probe_nll,
                inv.out_dir / "check_rows.f32",
                val_tokens,
                token_bytes.vocab_size,
                spec.integrity,
                outcome.wall_seconds,
            )
        except OutputError as exc:
            account.fail_check(
                IntegrityCheck.PROBE, f"the {kind} probe's eval ({plan.tokens.size:,} tokens): {exc}"
            )
            return
        except IntegrityFailure as failure:
            account.fail(RunStatus.INVALID, f"{failure} ({kind} probe)", failure.check)
            return
        account.probes.append(report)
        account.log_path = scored_log
    if spec.integrity.probe is not ProbeKind.FULL:
        account.notes.append(
            "integrity: prefix probe only; the full probe (which a parent of record needs) runs on seed "
            "and confirm runs"
        )
