"""Fixtures for the sandbox suite: the backend matrix, program folders and leftover-process checks."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sandbox.spec import DataPaths, IntegritySettings, Limits, RunSpec
from tests.sandbox.docker_env import docker_image  # noqa: F401  (a fixture used by backend_name)

HOSTILE_DIR = Path(__file__).parent / "programs"
UNIGRAM_TRAINER = Path(__file__).parent.parent / "programs" / "unigram_trainer.py"
# Short but not so short that a loaded 2-core machine turns honest runs into timeouts.
FAST_LIMITS = Limits(train_seconds=20, eval_seconds=20, startup_grace_seconds=10, max_log_bytes=1 << 20)
# The tiny validation split has ~25k tokens: at the challenge's 65,536-token tail every prefix probe
# would be the whole stream, so tests use a short tail and get a real prefix (cut at 5-10%).
TEST_INTEGRITY = IntegritySettings(tail_tokens=1024)
TEST_EVAL_SEQ_LEN = 64  # the unigram trainer's own default


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def backend_name(request) -> str:
    """Every contract test runs once per backend; the docker case skips where no engine/image exists."""
    if request.param == "docker":
        request.getfixturevalue("docker_image")
    return request.param


def make_program(folder: Path, program: str | None = None) -> Path:
    """A program folder whose ``train_gpt.py`` is a hostile program (or the honest unigram trainer).

    The unigram trainer is always copied alongside, because hostile programs import it and break one
    thing at a time.
    """
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(UNIGRAM_TRAINER, folder / "unigram_trainer.py")
    source = UNIGRAM_TRAINER if program is None else HOSTILE_DIR / f"{program}.py"
    shutil.copy(source, folder / "train_gpt.py")
    return folder


def processes_with(marker: str) -> list[int]:
    """Live (non-zombie) processes whose environment or command line mentions ``marker``."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            blobs = (entry / "environ").read_bytes() + (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if state != b"Z" and needle in blobs:
            found.append(int(entry.name))
    return found


def assert_nothing_left(marker: str, grace_seconds: float = 2.0) -> None:
    deadline = time.monotonic() + grace_seconds
    while (left := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left running after the run: {left}"


@pytest.fixture
def make_spec(tiny_data, tmp_path, backend_name, request) -> Callable[..., RunSpec]:
    """Build a RunSpec for a program on ``tiny_data`` with the backend under test and a fresh marker.

    The marker (``HOSTILE_MARKER`` knob) is inherited by everything the program starts, so
    :func:`assert_nothing_left` can find leftovers.
    """
    image = request.getfixturevalue("docker_image") if backend_name == "docker" else "unused"
    counter = iter(range(1_000_000))

    def build(program: str | None = None, *, knobs: dict[str, str] | None = None, **fields) -> RunSpec:
        n = next(counter)
        marker = f"autogolf-test-{uuid.uuid4().hex}"
        fields.setdefault("limits", FAST_LIMITS)
        fields.setdefault("integrity", TEST_INTEGRITY)
        fields.setdefault("eval_seq_len", TEST_EVAL_SEQ_LEN)
        fields.setdefault(
            "data", DataPaths(dataset_dir=tiny_data.dataset_dir, tokenizer_path=tiny_data.tokenizer_path)
        )
        return RunSpec(
            program_dir=make_program(tmp_path / f"program{n}", program),
            knobs={"HOSTILE_MARKER": marker, **(knobs or {})},
            out_dir=tmp_path / f"out{n}",
            backend=backend_name,
            docker_image=image,
            label=request.node.name[:60],
            **fields,
        )

    return build


@pytest.fixture
def harness_secret(monkeypatch) -> Iterator[str]:
    """An API key in the harness's environment, and a live process of the harness that holds it.

    /proc/<pid>/environ shows the environment a process was started with, not what it set since, so
    a key set in this test process alone is no test; a real controller got its key at start. The
    helper started here (as the controller starts its own) carries it from its start.
    """
    secret = f"sk-harness-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        yield secret
    finally:
        helper.kill()
        helper.wait()
