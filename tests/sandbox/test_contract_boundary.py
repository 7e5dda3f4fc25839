"""The sandbox as a boundary: hostile programs through ``sandbox.run`` on every backend.

Each program attacks what keeps scores honest — the harness's secrets, the data later runs are scored
on, the artifact's byte count — and reports what it got in its log; the test asserts it got nothing.
The local backend must be confined (bwrap) for these; the tests skip, naming the reason, where it
would not be, and the docker case skips where no engine runs.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from sandbox import DataPaths, RunStatus, run
from sandbox.backends.confinement import probe_bwrap
from tests.sandbox.conftest import assert_nothing_left


@pytest.fixture
def boundary(backend_name) -> str:
    """The backend under test, skipped for the local one where it would run unconfined."""
    if backend_name == "local" and (found := probe_bwrap()).bwrap is None:
        pytest.skip(f"the local backend is unconfined on this machine: {found.problem}")
    return backend_name


@pytest.fixture
def private_data(tiny_data, tmp_path) -> DataPaths:
    """A copy of the tiny dataset for one test, so a failed protection cannot spoil the others' data."""
    folder = tmp_path / "data"
    shutil.copytree(tiny_data.dataset_dir, folder / "dataset")
    tokenizer = shutil.copy(tiny_data.tokenizer_path, folder / tiny_data.tokenizer_path.name)
    return DataPaths(dataset_dir=folder / "dataset", tokenizer_path=tokenizer)


def _digests(data: DataPaths) -> dict[str, str]:
    files = [*sorted(data.dataset_dir.iterdir()), data.tokenizer_path]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _log_line(spec, phase: str, prefix: str) -> str:
    lines = [
        line for line in (spec.out_dir / f"{phase}.log").read_text().splitlines() if line.startswith(prefix)
    ]
    assert lines, f"{phase}.log has no line starting {prefix!r}"
    return lines[-1].removeprefix(prefix)


def test_program_cannot_read_the_harness_environment(make_spec, boundary, harness_secret):
    spec = make_spec("reads_harness_environ")
    result = run(spec)
    assert result.status is RunStatus.OK, (result.reason, result.error_excerpt)
    for phase in ("train", "eval"):
        scan = json.loads(_log_line(spec, phase, "environ scan: "))
        assert scan["found"] == {}, f"the {phase} phase read other processes' environments: {scan}"
        # Its own PID namespace: an init (bwrap's, or docker-init) and the program, nothing of the host.
        assert scan["processes"] <= 4, f"the {phase} phase sees {scan['processes']} processes"
        assert harness_secret not in (spec.out_dir / f"{phase}.log").read_text()
    assert_nothing_left(spec.knobs["HOSTILE_MARKER"])


def test_program_cannot_write_through_the_data_it_reads(make_spec, boundary, private_data):
    before = _digests(private_data)
    spec = make_spec("writes_through_data", data=private_data)
    result = run(spec)
    # Writes refused, the program goes on and is scored; or it crashed on the refusal. Either way
    # the data must be what it was.
    assert _digests(private_data) == before
    assert result.status in (RunStatus.OK, RunStatus.CRASHED), result.reason
    for phase in ("train", "eval"):
        log = (spec.out_dir / f"{phase}.log").read_text()
        attempts = [line for line in log.splitlines() if line.startswith("write ")]
        assert attempts and all("refused" in line for line in attempts), log[-2000:]


def test_a_stash_outside_the_artifact_does_not_reach_the_eval_phase(make_spec, boundary):
    spec = make_spec("stashes_outside_artifact")
    result = run(spec)
    found = json.loads(_log_line(spec, "eval", "stash found: "))
    assert found == [], f"the eval phase read back what training hid outside the artifact: {found}"
    assert result.status is RunStatus.OK, (result.reason, result.error_excerpt)
    # What was counted is the artifact alone, not tens of megabytes hidden beside it.
    assert result.artifact.model < 1_000_000
    assert_nothing_left(spec.knobs["HOSTILE_MARKER"])
