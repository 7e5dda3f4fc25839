"""What a confined local phase can see and write (real bwrap), and how the unconfined fallback reports.

Each program reports what it saw to a JSON file in its output folder; the test judges it. The tests
of the confined mode skip, naming the reason, where bwrap does not work.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path, PurePosixPath

import pytest

from sandbox.backends.base import PhaseInvocation
from sandbox.backends.confinement import (
    REPO_ROOT,
    Bwrap,
    Isolation,
    Scratch,
    bwrap_argv,
    nvidia_device_nodes,
    probe_bwrap,
    python_dirs,
)
from sandbox.backends.containment import Containment, probe_containment
from sandbox.backends.local import LocalBackend
from sandbox.errors import SandboxUnavailable
from sandbox.spec import Limits, Phase
from tests.sandbox.conftest import assert_nothing_left, processes_with

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the local backend needs Linux")

SHARD = "fineweb_train_000000.bin"


@pytest.fixture(scope="module")
def probed() -> Containment:
    return probe_containment()


@pytest.fixture
def confined(probed, tmp_path) -> LocalBackend:
    if probed.bwrap is None:
        pytest.skip(f"bwrap does not work here: {probed.unconfined_because}")
    return LocalBackend(probed, temp_root=_temp_root(tmp_path), term_grace_seconds=0.5)


def _temp_root(tmp_path: Path) -> Path:
    root = tmp_path / "backend-tmp"
    root.mkdir(exist_ok=True)
    return root


def _invocation(tmp_path: Path, source: str, phase: Phase = Phase.TRAIN, **overrides) -> PhaseInvocation:
    """A phase over one shard, a tokenizer and check positions, all in ``tmp_path/inputs``."""
    inputs = tmp_path / "inputs"
    if not inputs.exists():
        (inputs / "program").mkdir(parents=True)
        (inputs / SHARD).write_bytes(b"shard bytes " * 100)
        (inputs / "tok.model").write_bytes(b"tokenizer bytes")
        (inputs / "positions.i64").write_bytes(b"\0" * 16)
    (inputs / "program" / "prog.py").write_text(textwrap.dedent(source))
    fields = {
        "phase": phase,
        "program_dir": inputs / "program",
        "entry": "prog.py",
        "data_files": (inputs / SHARD,),
        "tokenizer_path": inputs / "tok.model",
        # Inside the output folder, as a test layout may have it: mounted again with its own mode.
        "artifact_dir": tmp_path / "out" / "artifact",
        "out_dir": tmp_path / "out",
        "log_path": tmp_path / "phase.log",
        "knob_env": {},
        "limits": Limits(),
        "wall_timeout_seconds": 30.0,
        "check_positions_path": inputs / "positions.i64" if phase is not Phase.TRAIN else None,
    }
    fields.update(overrides)
    return PhaseInvocation(**fields)


def _run(backend: LocalBackend, inv: PhaseInvocation) -> dict:
    outcome = backend.execute(inv, threading.Event())
    assert outcome.exit_code == 0, inv.log_path.read_text()
    return json.loads((inv.out_dir / "report.json").read_text())


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# Shared by the programs below: try an action, report "ok" or the errno's name.
ATTEMPT = """
    import errno, json, os
    def attempt(action):
        try:
            action()
            return "ok"
        except OSError as exc:
            return errno.errorcode.get(exc.errno, str(exc.errno))
    def report(data):
        with open(os.path.join(os.environ["GOLF_OUT"], "report.json"), "w") as f:
            json.dump(data, f)
"""


# ---------------------------------------------------------------------------------------- processes


def test_confined_phase_sees_no_process_or_environment_of_the_harness(tmp_path, confined, harness_secret):
    source = (
        ATTEMPT
        + """
    found, pids = [], sorted(int(n) for n in os.listdir("/proc") if n.isdigit())
    for pid in pids:
        for name in ("environ", "cmdline"):
            try:
                if b"sk-harness-secret-" in open(f"/proc/{pid}/{name}", "rb").read():
                    found.append(f"{pid}/{name}")
            except OSError:
                pass
    harness = int(os.environ["HARNESS_PID"])
    report({"found": found, "pids": pids, "harness_visible": os.path.exists(f"/proc/{harness}/environ")})
    """
    )
    inv = _invocation(tmp_path, source, knob_env={"HARNESS_PID": str(os.getpid())})
    seen = _run(confined, inv)
    assert seen["found"] == []
    # bwrap's init (1) and the program (2); the harness's pid is no process of this namespace.
    assert seen["pids"] == [1, 2]
    assert not seen["harness_visible"]


def test_unconfined_fallback_is_reported_and_gets_its_own_proc_where_possible(
    tmp_path, probed, harness_secret
):
    broken = probe_bwrap("/bin/false")
    assert broken.bwrap is None and "/bin/false does not work here" in broken.problem
    containment = Containment(
        unshare_prefix=probed.unshare_prefix,
        cgroups=probed.cgroups,
        bwrap=broken.bwrap,
        unconfined_because=broken.problem,
    )
    backend = LocalBackend(containment, term_grace_seconds=0.5)
    assert backend.isolation is Isolation.UNCONFINED
    assert containment.describe().startswith("UNCONFINED(")
    source = (
        ATTEMPT
        + """
    found = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and b"sk-harness-secret-" in open(f"/proc/{name}/environ", "rb").read():
                found.append(name)
        except OSError:
            pass
    report({"found": found})
    """
    )
    inv = _invocation(tmp_path, source)
    outcome = backend.execute(inv, threading.Event())
    assert outcome.exit_code == 0, inv.log_path.read_text()
    assert "isolation: unconfined" in outcome.detail and "does not work here" in outcome.detail
    if _unshare_mounts_proc():  # then the probe must have chosen it
        assert containment.own_proc and "own /proc" in outcome.detail
        assert json.loads((inv.out_dir / "report.json").read_text())["found"] == []
    else:
        assert "host /proc" in outcome.detail


def _unshare_mounts_proc() -> bool:
    """Whether this machine lets ``unshare`` give a command its own /proc (asked directly, not probed)."""
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    command = ["unshare", *user, "--pid", "--fork", "--mount", "--mount-proc", "true"]
    try:
        return subprocess.run(command, capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_the_sandbox_dies_with_the_init_shim(tmp_path, probed):
    """--die-with-parent: with no PID namespace or cgroup around bwrap, the shim's death must still end
    everything in the sandbox, a detached child with a wiped environment included."""
    if probed.bwrap is None:
        pytest.skip(f"bwrap does not work here: {probed.unconfined_because}")
    token = f"autogolf-orphan-{uuid.uuid4().hex}"
    source = f"""
        import os, sys, time
        ready = os.path.join(os.environ["GOLF_OUT"], "ready")
        if os.fork() == 0:
            os.setsid()
            sleeper = "import sys, time; open(sys.argv[1], 'w').close(); time.sleep(60)"
            os.execve(sys.executable, [sys.executable, "-c", sleeper, ready, "{token}"], {{}})
        time.sleep(60)
    """
    bare = Containment(unshare_prefix=None, cgroups=None, bwrap=probed.bwrap)
    backend = LocalBackend(bare, temp_root=_temp_root(tmp_path), term_grace_seconds=0.5)
    inv = _invocation(tmp_path, source)
    runner = threading.Thread(target=backend.execute, args=(inv, threading.Event()))
    runner.start()
    deadline = time.monotonic() + 10
    while not (inv.out_dir / "ready").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    shims = [pid for pid in processes_with(str(_temp_root(tmp_path))) if b"init_shim" in _cmdline(pid)]
    assert len(shims) == 1, shims
    os.kill(shims[0], signal.SIGKILL)
    runner.join(timeout=20)
    assert not runner.is_alive()
    assert_nothing_left(token)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# -------------------------------------------------------------------------------------------- files


@pytest.mark.parametrize("phase", [Phase.TRAIN, Phase.EVAL])
def test_confined_phase_cannot_write_its_inputs_and_they_stay_byte_identical(tmp_path, confined, phase):
    source = (
        ATTEMPT
        + """
    def overwrite(path):
        with open(path, "r+b") as f:
            f.write(b"PWNED")
    targets = {
        "shard": os.path.join(os.environ["DATA_PATH"], "fineweb_train_000000.bin"),
        "tokenizer": os.environ["TOKENIZER_PATH"],
        "program": os.path.abspath(__file__),
        "positions": os.environ.get("GOLF_CHECK_POSITIONS", "/golf/check_positions.i64"),
    }
    results = {name: attempt(lambda p=path: overwrite(p)) for name, path in targets.items()}
    results["truncate shard"] = attempt(lambda: os.truncate(targets["shard"], 0))
    results["new shard"] = attempt(lambda: open(os.path.join(os.environ["DATA_PATH"], "x.bin"), "w"))
    results["chmod shard"] = attempt(lambda: os.chmod(targets["shard"], 0o777))
    report(results)
    """
    )
    inv = _invocation(tmp_path, source, phase=phase)
    before = _digests(tmp_path / "inputs")
    seen = _run(confined, inv)
    refused = {"EROFS", "EACCES", "EPERM"}
    for target in ("shard", "tokenizer", "program", "truncate shard", "new shard", "chmod shard"):
        assert seen[target] in refused, (target, seen[target])
    assert seen["positions"] in refused | ({"ENOENT"} if phase is Phase.TRAIN else set())
    assert _digests(tmp_path / "inputs") == before


WRITE_PROBE = (
    ATTEMPT
    + """
    places = ["/", "/golf", "/golf/program", "/golf/data", "/golf/tokenizer", "/golf/artifact",
              "/golf/out", "/golf/out/artifact", "/golf/work", "/golf/home", "/tmp", "/dev", "/dev/shm",
              "/etc", "/usr", "/proc", "/sys", os.path.dirname(os.__file__)]
    written = {}
    for place in places:
        name = os.path.join(place, "autogolf-write-probe")
        written[place] = attempt(lambda n=name: open(n, "w").close())
    report(written)
    """
)


@pytest.mark.parametrize("phase", [Phase.TRAIN, Phase.EVAL, Phase.ALL])
def test_confined_phase_can_write_only_its_own_places(tmp_path, confined, phase):
    seen = _run(confined, _invocation(tmp_path, WRITE_PROBE, phase=phase))
    writable = {place for place, result in seen.items() if result == "ok"}
    expected = {"/golf/out", "/golf/work", "/golf/home", "/tmp", "/dev/shm"}
    if phase is not Phase.EVAL:
        expected |= {"/golf/artifact", "/golf/out/artifact"}
    assert writable == expected, seen


def test_confined_phase_sees_nothing_of_the_home_folder_the_repository_or_other_runs(tmp_path, confined):
    other_run = tmp_path / "other-run"
    other_run.mkdir()
    (other_run / "stash.bin").write_bytes(b"a stash")
    source = (
        ATTEMPT
        + """
    def listing(path):
        try:
            return sorted(os.listdir(path))
        except OSError as exc:
            return errno.errorcode.get(exc.errno, "?")
    report({name: listing(os.environ[name]) for name in ("HOST_HOME", "REPO", "OTHER_RUN", "PYTHON_PARENT")})
    """
    )
    home = Path.home()
    knobs = {
        "HOST_HOME": str(home),
        "REPO": str(REPO_ROOT),
        "OTHER_RUN": str(other_run),
        "PYTHON_PARENT": str(Path(sys.prefix).parent),
    }
    seen = _run(confined, _invocation(tmp_path, source, knob_env=knobs))
    assert seen["REPO"] == "ENOENT"
    assert seen["OTHER_RUN"] == "ENOENT"
    # What of the home folder is visible at all is the path down to a Python folder that lives in it.
    on_the_way = {p.relative_to(home).parts[0] for p in python_dirs() if p.is_relative_to(home)}
    assert seen["HOST_HOME"] == "ENOENT" or set(seen["HOST_HOME"]) <= on_the_way
    if Path(sys.prefix).is_relative_to(home):  # e.g. pyenv: only the running version, not its siblings
        assert seen["PYTHON_PARENT"] == [Path(sys.prefix).name]


def test_confined_phase_private_folders_are_gone_afterwards(tmp_path, confined):
    source = (
        ATTEMPT
        + """
    for place in ("/golf/work", "/golf/home", "/tmp"):
        with open(os.path.join(place, "left-behind.bin"), "wb") as f:
            f.write(b"x" * 4096)
    report({"cwd": os.getcwd(), "home": os.environ["HOME"], "tmp": os.environ["TMPDIR"]})
    """
    )
    seen = _run(confined, _invocation(tmp_path, source))
    assert seen == {"cwd": "/golf/work", "home": "/golf/home", "tmp": "/tmp"}
    assert list(_temp_root(tmp_path).iterdir()) == []


# --------------------------------------------------------------------------------------- bwrap argv


def _argv(tmp_path: Path, **overrides) -> list[str]:
    inv = _invocation(tmp_path, "pass\n", **overrides)
    root = tmp_path / "scratch"
    root.mkdir(exist_ok=True)
    scratch = Scratch(root, root / "work", root / "home", root / "tmp")
    return bwrap_argv(Bwrap("bwrap", ("--unshare-user-try",)), inv, scratch, marker=("M", "1"), status_fd=3)


def _options(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == option]


def test_gpu_phase_argv_passes_the_nvidia_nodes_and_sys_and_a_cpu_phase_does_not(tmp_path):
    cpu = _argv(tmp_path)
    assert not [arg for arg in cpu if "nvidia" in arg]
    assert "/sys" not in _options(cpu, "--ro-bind")
    gpu = _argv(tmp_path, gpus=(0,))
    nodes = _options(gpu, "--dev-bind-try")
    assert {"/dev/nvidiactl", "/dev/nvidia-uvm"} <= set(nodes)
    assert "/sys" in _options(gpu, "--ro-bind")
    for flags in (cpu, gpu):
        for flag in ("--unshare-pid", "--unshare-net", "--die-with-parent", "--new-session"):
            assert flag in flags
        assert flags[flags.index("--proc") + 1] == "/proc" and _options(flags, "--cap-drop") == ["ALL"]
        assert flags[-1] == "--" and flags[-3:-1] == ["--chdir", "/golf/work"]


def test_nvidia_nodes_are_found_per_gpu_and_per_mig_capability(tmp_path):
    dev = tmp_path / "dev"
    (dev / "nvidia-caps").mkdir(parents=True)
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-caps/nvidia-cap1", "null"):
        (dev / name).touch()
    found = {str(target): source for source, target in nvidia_device_nodes(dev)}
    assert {"/dev/nvidia0", "/dev/nvidia1", "/dev/nvidia-caps/nvidia-cap1", "/dev/nvidiactl"} <= set(found)
    assert "/dev/null" not in found
    assert found["/dev/nvidia1"] == dev / "nvidia1"
    assert all(isinstance(target, PurePosixPath) for _, target in nvidia_device_nodes(dev))


def test_view_binds_each_input_read_only_and_never_the_repository(tmp_path):
    argv = _argv(tmp_path, phase=Phase.EVAL)
    read_only = _pairs(argv, "--ro-bind")
    inputs = tmp_path / "inputs"
    assert (str(inputs / SHARD), f"/golf/data/{SHARD}") in read_only
    assert (str(inputs / "tok.model"), "/golf/tokenizer/tok.model") in read_only
    assert (str(inputs / "program"), "/golf/program") in read_only
    artifact = str(tmp_path / "out" / "artifact")
    assert {(artifact, "/golf/artifact"), (artifact, "/golf/out/artifact")} <= read_only  # eval
    scratch = tmp_path / "scratch"
    assert _pairs(argv, "--bind") == {
        (str(tmp_path / "out"), "/golf/out"),
        (str(scratch / "work"), "/golf/work"),
        (str(scratch / "home"), "/golf/home"),
        (str(scratch / "tmp"), "/tmp"),
    }
    assert not any(Path(source).resolve().is_relative_to(REPO_ROOT) for source, _ in read_only)
    assert not any("shadow" in arg for arg in argv)


def _pairs(argv: list[str], option: str) -> set[tuple[str, str]]:
    return {(argv[i + 1], argv[i + 2]) for i, arg in enumerate(argv) if arg == option}


def test_a_bwrap_that_cannot_set_up_the_sandbox_is_a_harness_fault(tmp_path, probed):
    # /bin/false takes bwrap's options and exits 1 without running anything: no "exit-code" status.
    broken = Containment(
        unshare_prefix=None, cgroups=None, bwrap=Bwrap("/bin/false", ("--unshare-user-try",))
    )
    with pytest.raises(SandboxUnavailable, match="bwrap could not set up the train sandbox"):
        LocalBackend(broken).execute(_invocation(tmp_path, "pass\n"), threading.Event())
