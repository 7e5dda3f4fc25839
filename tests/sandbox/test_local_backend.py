"""The local backend, driven through ``Backend.execute`` with tiny stdlib-only programs.

The kill and containment tests run against every containment this machine offers (confined by bwrap
over the probed mechanisms, and the unconfined fallbacks built from them), so that a machine without
bwrap, PID namespaces or cgroups still has its fallback checked, and this one checks all of them.
What a confined phase can see and write is in tests/sandbox/test_local_confinement.py.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from sandbox.backends.base import PhaseInvocation
from sandbox.backends.confinement import Isolation
from sandbox.backends.containment import Containment, is_running, probe_containment
from sandbox.backends.local import LocalBackend, measure_noop_seconds
from sandbox.backends.local_launch import prepare_launch
from sandbox.errors import SandboxUnavailable
from sandbox.spec import Limits, Phase
from tests.sandbox.conftest import processes_with

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the local backend needs Linux /proc")

GRACE_SECONDS = 0.5


@pytest.fixture(scope="module")
def probed() -> Containment:
    return probe_containment()


def _variants(probed: Containment) -> dict[str, Containment]:
    variants = {"subreaper": Containment(unshare_prefix=None, cgroups=None)}
    if probed.cgroups is not None:
        variants["cgroup"] = Containment(unshare_prefix=None, cgroups=probed.cgroups)
    if probed.unshare_prefix is not None:
        variants["pidns"] = Containment(unshare_prefix=probed.unshare_prefix, cgroups=None)
    variants["unconfined"] = Containment(unshare_prefix=probed.unshare_prefix, cgroups=probed.cgroups)
    if probed.bwrap is not None:
        variants["confined"] = probed
        # bwrap alone: no PID namespace or cgroup around it, only the shim as subreaper.
        variants["confined-bare"] = Containment(unshare_prefix=None, cgroups=None, bwrap=probed.bwrap)
    return variants


@pytest.fixture(params=["confined", "confined-bare", "unconfined", "pidns", "cgroup", "subreaper"])
def any_backend(request, probed) -> LocalBackend:
    variants = _variants(probed)
    if request.param not in variants:
        reason = f"; bwrap: {probed.unconfined_because}" if "confined" in request.param else ""
        pytest.skip(f"containment {request.param!r} is not available on this machine{reason}")
    return LocalBackend(variants[request.param], term_grace_seconds=GRACE_SECONDS)


@pytest.fixture
def backend(probed) -> LocalBackend:
    """The backend as it is used: whatever the probe found (confined wherever bwrap works)."""
    return LocalBackend(probed, term_grace_seconds=GRACE_SECONDS)


@pytest.fixture(params=["confined", "unconfined"])
def either_mode(request, probed) -> LocalBackend:
    """The probed mechanisms with and without bwrap: for behaviour both modes must have."""
    variants = _variants(probed)
    if request.param not in variants:
        pytest.skip(f"bwrap does not work here: {probed.unconfined_because}")
    return LocalBackend(variants[request.param], term_grace_seconds=GRACE_SECONDS)


def _invocation(tmp_path: Path, source: str, **overrides) -> PhaseInvocation:
    program_dir = tmp_path / "program"
    program_dir.mkdir(exist_ok=True)
    (program_dir / "prog.py").write_text(textwrap.dedent(source))
    tokenizer = tmp_path / "tok.model"
    if not tokenizer.exists():
        tokenizer.write_bytes(b"tokenizer")
    fields = {
        "phase": Phase.TRAIN,
        "program_dir": program_dir,
        "entry": "prog.py",
        "data_files": (),
        "tokenizer_path": tokenizer,
        "artifact_dir": tmp_path / "out" / "artifact",
        "out_dir": tmp_path / "out",
        "log_path": tmp_path / "out" / "log.txt",
        "knob_env": {},
        "limits": Limits(),
        "wall_timeout_seconds": 10.0,
    }
    fields.update(overrides)
    return PhaseInvocation(**fields)


def _marked(variable: str, value: str) -> list[int]:
    """Live processes whose environment carries ``variable=value`` (a marker the test chose)."""
    needle = f"{variable}={value}".encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                environ = Path(f"/proc/{name}/environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0") and is_running(int(name)):
                found.append(int(name))
    return found


def _wait_for_file(path: Path, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


# ------------------------------------------------------------------------------- kills everything


def test_infinite_loop_times_out_and_leaves_no_process(tmp_path, any_backend):
    marker = uuid.uuid4().hex
    inv = _invocation(
        tmp_path, "while True:\n    pass\n", wall_timeout_seconds=1.0, knob_env={"TEST_MARKER": marker}
    )
    outcome = any_backend.execute(inv, threading.Event())
    assert outcome.timed_out and not outcome.stopped
    assert outcome.exit_code is None
    assert 1.0 <= outcome.wall_seconds < 1.0 + GRACE_SECONDS + 2.0
    assert _marked("TEST_MARKER", marker) == []


# The grandchild detaches (double fork + setsid) and re-executes itself with a token in its command
# line, keeping its environment ("marked") or wiping it ("wiped"), so that no environment scan can find
# it. It says it is up by creating a file; the test looks for the token on the host afterwards. (Its
# pid would not do: confined, and unconfined where /proc is the namespace's own, it is not the host's.)
DETACHING_PROGRAM = """
    import os, sys, time
    ready = os.path.join(os.environ["GOLF_OUT"], "grandchild.ready")
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            sleeper = "import sys, time; open(sys.argv[1], 'w').close(); time.sleep(60)"
            argv = [sys.executable, "-c", sleeper, ready, "{token}"]
            os.execve(sys.executable, argv, {{}} if {wipe_env} else dict(os.environ))
        os._exit(0)
    while not os.path.exists(ready):
        time.sleep(0.01)
    {after}
"""


def _detaching(wipe_env: bool, after: str) -> tuple[str, str]:
    token = f"autogolf-grandchild-{uuid.uuid4().hex}"
    return DETACHING_PROGRAM.format(wipe_env=wipe_env, after=after, token=token), token


@pytest.mark.parametrize("wipe_env", [False, True], ids=["marked", "wiped-env"])
def test_setsid_detached_child_is_killed_when_the_program_exits(tmp_path, any_backend, wipe_env):
    source, token = _detaching(wipe_env, after="print('parent done')")
    inv = _invocation(tmp_path, source)
    outcome = any_backend.execute(inv, threading.Event())
    assert outcome.exit_code == 0, (tmp_path / "out" / "log.txt").read_text()
    assert (tmp_path / "out" / "grandchild.ready").exists()
    assert processes_with(token) == []
    assert outcome.wall_seconds < 5.0


def test_setsid_detached_child_is_killed_at_timeout(tmp_path, any_backend):
    source, token = _detaching(True, after="time.sleep(60)")
    inv = _invocation(tmp_path, source, wall_timeout_seconds=1.5)
    outcome = any_backend.execute(inv, threading.Event())
    assert outcome.timed_out
    assert (tmp_path / "out" / "grandchild.ready").exists()
    assert processes_with(token) == []


def test_stop_event_ends_the_run_quickly(tmp_path, any_backend):
    inv = _invocation(tmp_path, "import time\ntime.sleep(60)\n", wall_timeout_seconds=30.0)
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    outcome = any_backend.execute(inv, stop)
    timer.join()
    assert outcome.stopped and not outcome.timed_out
    assert outcome.wall_seconds < 0.5 + 1.0


class _InterruptedWatch(threading.Event):
    """A stop flag whose check raises KeyboardInterrupt once the run is under way (as Ctrl-C would)."""

    def __init__(self, after_checks: int) -> None:
        super().__init__()
        self.checks = after_checks

    def is_set(self) -> bool:
        self.checks -= 1
        if self.checks < 0:
            raise KeyboardInterrupt
        return False


def test_an_exception_in_the_callers_watch_kills_the_run(tmp_path, any_backend):
    marker = uuid.uuid4().hex
    inv = _invocation(
        tmp_path, "import time\ntime.sleep(60)\n", wall_timeout_seconds=30.0, knob_env={"TEST_MARKER": marker}
    )
    with pytest.raises(KeyboardInterrupt):
        any_backend.execute(inv, _InterruptedWatch(after_checks=5))
    assert _marked("TEST_MARKER", marker) == []


def test_program_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path, backend):
    source = """
        import os, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open(os.path.join(os.environ["GOLF_OUT"], "ready"), "w").close()
        time.sleep(60)
    """
    inv = _invocation(tmp_path, source, wall_timeout_seconds=30.0)
    stop = threading.Event()

    def stop_when_ready() -> None:
        _wait_for_file(tmp_path / "out" / "ready")
        stop.set()

    threading.Thread(target=stop_when_ready).start()
    begin = time.monotonic()
    outcome = backend.execute(inv, stop)
    assert outcome.stopped and outcome.exit_code is None
    assert time.monotonic() - begin >= GRACE_SECONDS
    assert outcome.wall_seconds < 5.0


# ------------------------------------------------------------------------------------- limits


def test_stdout_flood_is_capped_and_does_not_block(tmp_path, backend):
    source = """
        import sys
        out = sys.stdout.buffer
        out.write(b"START\\n")
        line = b"x" * 1023 + b"\\n"
        block = line * 1024  # 1 MiB
        for _ in range(210):
            out.write(block)
        out.write(b"THE END\\n")
    """
    cap = 1 << 20
    inv = _invocation(tmp_path, source, limits=Limits(max_log_bytes=cap))
    outcome = backend.execute(inv, threading.Event())
    log_bytes = inv.log_path.read_bytes()
    assert outcome.exit_code == 0
    assert outcome.log_truncated
    assert len(log_bytes) <= cap
    assert log_bytes.startswith(b"START\n") and log_bytes.endswith(b"THE END\n")
    assert outcome.wall_seconds < 10.0


def test_fork_bomb_is_contained(tmp_path, backend):
    if not backend.containment.bounds_processes:
        pytest.skip("no cgroup pids controller here and RLIMIT_NPROC does not bind root")
    marker = uuid.uuid4().hex
    source = """
        import os, time
        while True:
            try:
                os.fork()
            except OSError:
                time.sleep(0.01)
    """
    max_processes = 32
    inv = _invocation(
        tmp_path,
        source,
        wall_timeout_seconds=1.5,
        limits=Limits(max_processes=max_processes),
        knob_env={"TEST_MARKER": marker},
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, len(_marked("TEST_MARKER", marker)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        outcome = backend.execute(inv, threading.Event())
    finally:
        done.set()
        sampler.join()
    assert outcome.timed_out
    assert outcome.wall_seconds < 10.0
    assert 2 <= peak <= max_processes + 2  # + unshare and the init, outside the program's count
    assert _marked("TEST_MARKER", marker) == []


def test_memory_hog_over_its_limit_is_reported_as_oom(tmp_path, backend):
    source = """
        hoard = []
        while True:
            hoard.append(bytearray(16 * 1024 * 1024))
    """
    inv = _invocation(tmp_path, source, limits=Limits(memory_bytes=256 * 1024**2))
    outcome = backend.execute(inv, threading.Event())
    assert outcome.oom
    assert outcome.exit_code != 0
    assert not outcome.timed_out


def test_cgroup_memory_limit_kills_a_hog_and_reports_oom(tmp_path, backend):
    plan = backend.containment.cgroups
    if plan is None or (plan.version == 1 and "memory" not in plan.parents):
        pytest.skip("no writable memory cgroup on this machine")
    # A GPU run gets no address-space limit, so only the cgroup stops this hog (CUDA is never
    # touched: the program is stdlib-only). ``b"x" * n`` writes its pages, so they are resident.
    source = """
        hoard = []
        while True:
            hoard.append(b"x" * (16 * 1024 * 1024))
    """
    inv = _invocation(tmp_path, source, limits=Limits(memory_bytes=128 * 1024**2), gpus=(0,))
    outcome = backend.execute(inv, threading.Event())
    assert outcome.oom and outcome.exit_code is None
    assert "oom_kill=" in outcome.detail


def test_program_within_its_memory_limit_is_not_oom(tmp_path, backend):
    inv = _invocation(
        tmp_path, "x = bytearray(32 * 1024 * 1024)\n", limits=Limits(memory_bytes=256 * 1024**2)
    )
    outcome = backend.execute(inv, threading.Event())
    assert outcome.exit_code == 0 and not outcome.oom


def test_allocator_error_in_the_log_of_a_program_that_exited_0_is_not_oom(tmp_path, backend):
    # Autotuners print such errors for the configurations they skip, and then carry on.
    source = "print('torch.OutOfMemoryError: CUDA out of memory (config skipped)')\n"
    outcome = backend.execute(_invocation(tmp_path, source), threading.Event())
    assert outcome.exit_code == 0 and not outcome.oom
    crashed = backend.execute(_invocation(tmp_path, source + "raise SystemExit(1)\n"), threading.Event())
    assert crashed.exit_code == 1 and crashed.oom


def test_sigkill_the_harness_did_not_send_counts_as_oom(tmp_path, backend):
    # The kernel's OOM killer ends a process with SIGKILL; the harness cannot tell it from others.
    inv = _invocation(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    outcome = backend.execute(inv, threading.Event())
    assert outcome.oom and outcome.exit_code is None
    assert "SIGKILL" in outcome.detail


# ---------------------------------------------------------------------------- environment, files


def test_environment_is_scrubbed_and_carries_the_contract(tmp_path, either_mode, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "must-not-leak")
    source = """
        import json, os
        with open(os.path.join(os.environ["GOLF_OUT"], "env.json"), "w") as f:
            json.dump({"env": dict(os.environ), "cwd": os.getcwd()}, f)
    """
    positions = tmp_path / "positions.i64"
    positions.write_bytes(b"\0" * 8)
    inv = _invocation(
        tmp_path,
        source,
        phase=Phase.EVAL,
        knob_env={"ITERATIONS": "7", "DATA_PATH": "/somewhere/else", "EVAL_SEQ_LEN": "99"},
        check_positions_path=positions,
        eval_seq_len=64,
    )
    outcome = either_mode.execute(inv, threading.Event())
    assert outcome.exit_code == 0, inv.log_path.read_text()
    seen = json.loads((inv.out_dir / "env.json").read_text())
    env = seen["env"]
    assert "OPENAI_API_KEY" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert env["GOLF_PHASE"] == "eval"
    if either_mode.isolation is Isolation.CONFINED:  # the /golf view, as under Docker
        assert env["GOLF_OUT"] == "/golf/out" and env["GOLF_ARTIFACT_DIR"] == "/golf/artifact"
        assert env["DATA_PATH"] == "/golf/data" and env["TOKENIZER_PATH"] == "/golf/tokenizer/tok.model"
        assert env["GOLF_CHECK_POSITIONS"] == "/golf/check_positions.i64"
        assert env["HOME"] == "/golf/home" and env["TMPDIR"] == "/tmp"
        assert seen["cwd"] == "/golf/work"
    else:
        assert env["GOLF_OUT"] == str(inv.out_dir)
        assert env["GOLF_ARTIFACT_DIR"] == str(inv.artifact_dir)
        assert env["GOLF_CHECK_POSITIONS"] == str(positions)
        assert env["DATA_PATH"] != "/somewhere/else"  # a knob cannot redirect the phase's data
        # The working directory and HOME are the run's own, removed afterwards.
        assert Path(seen["cwd"]).parent == Path(env["HOME"])
        assert not Path(env["HOME"]).exists()
    assert env["ITERATIONS"] == "7"
    assert env["EVAL_SEQ_LEN"] == "64"  # the harness's, not the knob's
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["PYTHONUNBUFFERED"] == "1" and env["LC_ALL"] == "C.UTF-8"
    allowed = {
        "PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE",
        "CUDA_VISIBLE_DEVICES", "GOLF_PHASE", "GOLF_OUT", "GOLF_ARTIFACT_DIR", "GOLF_CHECK_POSITIONS",
        "DATA_PATH", "TOKENIZER_PATH", "ITERATIONS", "EVAL_SEQ_LEN", "AUTOGOLF_RUN_MARKER",
        "PWD",  # set by bwrap's --chdir
    }  # fmt: skip
    assert set(env) <= allowed


def test_data_dir_shows_only_the_phase_files(tmp_path, either_mode):
    shards = tmp_path / "dataset"
    shards.mkdir()
    for name in ("fineweb_train_000000.bin", "fineweb_train_000001.bin", "fineweb_val_000000.bin"):
        (shards / name).write_bytes(name.encode())
    source = """
        import json, os
        data = os.environ["DATA_PATH"]
        listing = {n: open(os.path.join(data, n), "rb").read().decode() for n in sorted(os.listdir(data))}
        tokenizer = open(os.environ["TOKENIZER_PATH"], "rb").read().decode()
        open("relative_junk.txt", "w").write("x")
        with open(os.path.join(os.environ["GOLF_OUT"], "data.json"), "w") as f:
            json.dump({"listing": listing, "tokenizer": tokenizer, "cwd": os.getcwd()}, f)
    """
    train = (shards / "fineweb_train_000000.bin", shards / "fineweb_train_000001.bin")
    inv = _invocation(tmp_path, source, data_files=train)
    outcome = either_mode.execute(inv, threading.Event())
    assert outcome.exit_code == 0, inv.log_path.read_text()
    seen = json.loads((inv.out_dir / "data.json").read_text())
    expected = {
        "fineweb_train_000000.bin": "fineweb_train_000000.bin",
        "fineweb_train_000001.bin": "fineweb_train_000001.bin",
    }
    if either_mode.isolation is Isolation.UNCONFINED:
        expected["tok.model"] = "tokenizer"  # confined, it is in /golf/tokenizer, as under Docker
    assert seen["listing"] == expected
    assert seen["tokenizer"] == "tokenizer"
    assert not (inv.program_dir / "relative_junk.txt").exists()
    if either_mode.isolation is Isolation.UNCONFINED:
        assert not Path(seen["cwd"]).exists()
    assert sorted(p.name for p in shards.iterdir())[-1] == "fineweb_val_000000.bin"  # data untouched


def test_missing_data_file_is_a_harness_fault_naming_the_file(tmp_path, backend):
    inv = _invocation(tmp_path, "pass\n", data_files=(tmp_path / "nope.bin",))
    with pytest.raises(SandboxUnavailable, match="nope.bin"):
        backend.execute(inv, threading.Event())


@pytest.mark.parametrize(
    ("source", "expected"),
    [("pass\n", 0), ("import sys\nsys.exit(7)\n", 7), ("raise RuntimeError('boom')\n", 1)],
)
def test_exit_codes_are_reported(tmp_path, backend, source, expected):
    outcome = backend.execute(_invocation(tmp_path, source), threading.Event())
    assert outcome.exit_code == expected
    assert not (outcome.timed_out or outcome.stopped or outcome.oom)
    assert "containment:" in outcome.detail


def test_death_by_signal_has_no_exit_code_and_names_the_signal(tmp_path, backend):
    inv = _invocation(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    outcome = backend.execute(inv, threading.Event())
    assert outcome.exit_code is None
    assert "SIGSEGV" in outcome.detail
    assert not outcome.oom


def test_output_reaches_the_log(tmp_path, backend):
    inv = _invocation(tmp_path, "import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\n")
    outcome = backend.execute(inv, threading.Event())
    assert outcome.exit_code == 0 and not outcome.log_truncated
    assert inv.log_path.read_text().splitlines() == ["to stdout", "to stderr"]


def test_run_cgroups_are_removed_afterwards(tmp_path, backend):
    plan = backend.containment.cgroups
    if plan is None:
        pytest.skip("no writable cgroup hierarchy on this machine")
    # Read from the host while the program waits: a confined program's /proc/self/cgroup shows only
    # "/" (its own cgroup namespace). Other runs on the machine may come and go meanwhile.
    marker = uuid.uuid4().hex
    source = """
        import os, time
        out = os.environ["GOLF_OUT"]
        open(os.path.join(out, "ready"), "w").close()
        deadline = time.monotonic() + 10
        while not os.path.exists(os.path.join(out, "seen")) and time.monotonic() < deadline:
            time.sleep(0.02)
    """
    inv = _invocation(tmp_path, source, knob_env={"TEST_MARKER": marker})
    lines: list[str] = []

    def look() -> None:
        _wait_for_file(tmp_path / "out" / "ready")
        for pid in _marked("TEST_MARKER", marker):
            lines.extend(Path(f"/proc/{pid}/cgroup").read_text().splitlines())
        (tmp_path / "out" / "seen").touch()

    watcher = threading.Thread(target=look)
    watcher.start()
    backend.execute(inv, threading.Event())
    watcher.join()
    names = {line.rsplit("/", 1)[-1] for line in lines if "/autogolf-" in line}
    assert names, f"the run was not placed in an autogolf cgroup: {lines}"
    left = [parent / name for parent in plan.parents.values() for name in names if (parent / name).exists()]
    assert left == []


def test_multi_process_runs_go_through_torchrun(tmp_path, either_mode):
    inv = _invocation(tmp_path, "pass\n", nproc=4, gpus=(0, 1, 2, 3))
    (tmp_path / "run").mkdir()
    launch = prepare_launch(
        inv, tmp_path / "run", containment=either_mode.containment, cgroup=None, marker="m"
    )
    last = len(launch.argv) - 1 - launch.argv[::-1].index("--")
    program = launch.argv[last + 1 :]
    assert program[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    confined = either_mode.isolation is Isolation.CONFINED
    entry = "/golf/program/prog.py" if confined else str(inv.program_dir / "prog.py")
    assert program[-1] == entry
    assert "--rlimit=as=" not in " ".join(launch.argv)  # no address-space limit on GPU runs
    launch.close_fds()


def test_noop_benchmark_measures_a_positive_time(backend):
    seconds = measure_noop_seconds(repeats=3, backend=backend)
    assert 0.0 < seconds < 5.0


@pytest.mark.slow
def test_torchrun_starts_every_rank_and_leaves_nothing_behind(tmp_path, backend):
    pytest.importorskip("torch")
    marker = uuid.uuid4().hex
    source = """
        import os, sys
        # One write per line: unbuffered, print() writes each argument apart and the ranks interleave.
        sys.stdout.write(f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}\\n")
        sys.stdout.flush()
    """
    inv = _invocation(tmp_path, source, nproc=2, knob_env={"TEST_MARKER": marker}, wall_timeout_seconds=60.0)
    outcome = backend.execute(inv, threading.Event())
    log_text = inv.log_path.read_text()
    assert outcome.exit_code == 0, log_text
    assert "rank 0 of 2" in log_text and "rank 1 of 2" in log_text
    assert _marked("TEST_MARKER", marker) == []


@pytest.mark.gpu
def test_cuda_works_inside_the_sandbox(tmp_path, backend):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    source = """
        import torch
        x = torch.ones(1024, 1024, device="cuda")
        print("sum", int((x @ x).sum().item()), "devices", torch.cuda.device_count(), flush=True)
    """
    inv = _invocation(tmp_path, source, gpus=(0,), limits=Limits(memory_bytes=16 * 1024**3))
    outcome = backend.execute(inv, threading.Event())
    log_text = inv.log_path.read_text()
    assert outcome.exit_code == 0, log_text
    assert f"sum {1024**3} devices 1" in log_text
