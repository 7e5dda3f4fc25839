"""The docker backend: container settings (no engine needed) and isolation against a real engine.

The engine tests run stdlib-only Python programs in the test image (tests/sandbox/docker_env.py);
each program reports what it could and could not do in a JSON file under /golf/out.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from sandbox.backends.base import PhaseInvocation
from sandbox.backends.docker_config import (
    LABEL_CONTROLLER_HOST,
    LABEL_CONTROLLER_PID,
    LABEL_CONTROLLER_START,
    LABEL_NAME,
    LABEL_RUN,
    DockerSettings,
    container_config,
    controller_alive,
    controller_labels,
)
from sandbox.errors import HarnessError, SandboxUnavailable
from sandbox.spec import Limits, Phase
from tests.sandbox import docker_env

# Session fixtures, visible to the tests of this module under these names.
docker_engine = docker_env.docker_engine
docker_image = docker_env.docker_image

SETTINGS = DockerSettings()


def make_invocation(
    root: Path,
    program: str = "pass\n",
    *,
    phase: Phase = Phase.ALL,
    limits: Limits | None = None,
    wall_timeout_seconds: float = 60.0,
    gpus: tuple[int, ...] = (),
    knob_env: dict[str, str] | None = None,
    label: str = "",
    artifact_dir: Path | None = None,
) -> PhaseInvocation:
    """A phase over a throwaway program and two tiny stand-in shards under ``root``."""
    program_dir = root / "program"
    data = root / "data"
    out = root / "out"
    for folder in (program_dir, data, out):
        folder.mkdir(parents=True, exist_ok=True)
    (program_dir / "train_gpt.py").write_text(textwrap.dedent(program))
    shards = []
    for name in ("fineweb_train_000000.bin", "fineweb_val_000000.bin"):
        (data / name).write_bytes(name.encode())
        shards.append(data / name)
    tokenizer = data / "tok.model"
    tokenizer.write_bytes(b"tokenizer")
    artifact = artifact_dir or root / "artifact"
    artifact.mkdir(parents=True, exist_ok=True)
    positions = root / "check_positions.i64"
    positions.write_bytes(b"\0" * 8)
    return PhaseInvocation(
        phase=phase,
        program_dir=program_dir,
        entry="train_gpt.py",
        data_files=tuple(shards),
        tokenizer_path=tokenizer,
        artifact_dir=artifact,
        out_dir=out,
        log_path=root / "run.log",
        knob_env=knob_env or {},
        limits=limits or Limits(),
        wall_timeout_seconds=wall_timeout_seconds,
        gpus=gpus,
        nproc=max(1, len(gpus)),
        check_positions_path=None if phase is Phase.TRAIN else positions,
        label=label,
    )


def config_for(inv: PhaseInvocation) -> dict:
    return container_config(
        inv, image="img", run_id="r" * 32, settings=SETTINGS, controller=controller_labels()
    )


def mounts_by_target(config: dict) -> dict[str, dict]:
    return {m["Target"]: m for m in config["mounts"]}


# ------------------------------------------------------------------------------- without an engine


def test_gpu_request_is_built_only_when_gpus_are_given(tmp_path):
    assert "device_requests" not in config_for(make_invocation(tmp_path))
    (request,) = config_for(make_invocation(tmp_path, gpus=(2, 5)))["device_requests"]
    assert request["DeviceIDs"] == ["2", "5"]
    assert request["Capabilities"] == [["gpu"]]
    assert "Count" not in request or request["Count"] in (None, 0)


def test_multi_gpu_phase_is_launched_through_torch_distributed(tmp_path):
    command = config_for(make_invocation(tmp_path, gpus=(0, 1, 2)))["command"]
    assert command[:3] == ["python3", "-m", "torch.distributed.run"]
    assert "--nproc_per_node=3" in command
    assert command[-1] == "/golf/program/train_gpt.py"


def test_container_is_locked_down(tmp_path):
    limits = Limits(memory_bytes=3 * 1024**3, max_processes=77, max_open_files=99, max_file_bytes=12345)
    config = config_for(make_invocation(tmp_path, limits=limits, label="camp/7"))
    assert config["read_only"] is True
    assert config["network_mode"] == "none"
    assert config["cap_drop"] == ["ALL"]
    assert config["security_opt"] == ["no-new-privileges"]
    assert config["mem_limit"] == config["memswap_limit"] == 3 * 1024**3
    assert config["pids_limit"] == 77
    ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in config["ulimits"]}
    assert ulimits["nofile"] == (99, 99) and ulimits["fsize"] == (12345, 12345)
    assert not config["user"].startswith("0:")
    assert config["labels"][LABEL_RUN] == "r" * 32
    assert config["labels"][LABEL_NAME] == "camp/7"
    assert config["labels"][LABEL_CONTROLLER_PID] == str(os.getpid())
    assert config["labels"][LABEL_CONTROLLER_HOST] == socket.gethostname()
    assert set(config["tmpfs"]) == {"/tmp", "/golf/work", "/golf/home"}


def test_no_memory_limit_means_no_mem_limit_argument(tmp_path):
    assert "mem_limit" not in config_for(make_invocation(tmp_path, limits=Limits(memory_bytes=None)))


def test_only_outputs_are_writable_and_each_shard_is_its_own_mount(tmp_path):
    train = mounts_by_target(config_for(make_invocation(tmp_path, phase=Phase.TRAIN)))
    writable = {target for target, m in train.items() if not m["ReadOnly"]}
    assert writable == {"/golf/out", "/golf/artifact"}
    assert train["/golf/data/fineweb_train_000000.bin"]["Source"] == str(
        tmp_path / "data/fineweb_train_000000.bin"
    )
    assert train["/golf/program"]["ReadOnly"] and train["/golf/tokenizer/tok.model"]["ReadOnly"]
    assert "/golf/check_positions.i64" not in train

    evaluation = mounts_by_target(config_for(make_invocation(tmp_path, phase=Phase.EVAL)))
    assert {t for t, m in evaluation.items() if not m["ReadOnly"]} == {"/golf/out"}
    assert evaluation["/golf/check_positions.i64"]["ReadOnly"]


def test_artifact_inside_the_output_folder_stays_read_only_in_eval(tmp_path):
    inv = make_invocation(tmp_path, phase=Phase.EVAL, artifact_dir=tmp_path / "out" / "artifact")
    mounts = mounts_by_target(config_for(inv))
    assert mounts["/golf/out"]["ReadOnly"] is False
    assert mounts["/golf/out/artifact"]["ReadOnly"] is True


def test_contract_variables_override_knobs(tmp_path):
    knobs = {"DATA_PATH": "/host/data", "GOLF_OUT": "/elsewhere", "NUM_LAYERS": "3"}
    env = config_for(make_invocation(tmp_path, phase=Phase.EVAL, knob_env=knobs))["environment"]
    assert env["NUM_LAYERS"] == "3"
    assert env["DATA_PATH"] == "/golf/data" and env["GOLF_OUT"] == "/golf/out"
    assert env["GOLF_PHASE"] == "eval"
    assert env["TOKENIZER_PATH"] == "/golf/tokenizer/tok.model"
    assert env["GOLF_CHECK_POSITIONS"] == "/golf/check_positions.i64"
    train_env = config_for(make_invocation(tmp_path, phase=Phase.TRAIN))["environment"]
    assert "GOLF_CHECK_POSITIONS" not in train_env


def test_entry_outside_the_program_folder_is_refused(tmp_path):
    inv = make_invocation(tmp_path)
    bad = PhaseInvocation(**{**inv.__dict__, "entry": "../secret.py"})
    with pytest.raises(HarnessError, match="inside program_dir"):
        config_for(bad)


def test_shards_with_the_same_name_are_refused(tmp_path):
    inv = make_invocation(tmp_path)
    other = tmp_path / "elsewhere" / inv.data_files[0].name
    other.parent.mkdir()
    other.write_bytes(b"x")
    with pytest.raises(HarnessError, match="share the name"):
        config_for(PhaseInvocation(**{**inv.__dict__, "data_files": (*inv.data_files, other)}))


def test_controller_alive_tells_the_labelled_process_from_a_dead_or_reused_pid():
    labels = controller_labels()
    pid, start = int(labels[LABEL_CONTROLLER_PID]), labels[LABEL_CONTROLLER_START]
    assert start.isdigit()
    assert controller_alive(pid, start)
    assert not controller_alive(pid, str(int(start) + 1))  # the pid now belongs to a later process
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    assert not controller_alive(int(finished.stdout), start)


def test_unknown_backend_setting_is_refused():
    with pytest.raises(ValidationError, match="kill_grace"):
        DockerSettings(kill_grace=3)


def test_unreachable_engine_raises_sandbox_unavailable_with_a_hint(monkeypatch, tmp_path):
    from sandbox.backends.docker import DockerBackend

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(SandboxUnavailable, match="cannot reach the Docker engine") as caught:
        DockerBackend("autogolf-trainer:latest")
    assert "docker_engine.sh" in caught.value.hint


class _EngineThatDropsConnections:
    """Answers the start-up checks, then loses the connection when a container is created."""

    class images:
        get = staticmethod(lambda name: object())

    class api:
        containers = staticmethod(lambda **filters: [])

    class containers:
        @staticmethod
        def create(**config):
            import requests

            raise requests.exceptions.ConnectionError("connection reset by the engine")


def test_engine_lost_during_a_run_raises_sandbox_unavailable(tmp_path):
    from sandbox.backends.docker import DockerBackend

    backend = DockerBackend("img", client=_EngineThatDropsConnections())
    with pytest.raises(SandboxUnavailable, match="failed during the all phase: ConnectionError"):
        backend.execute(make_invocation(tmp_path), threading.Event())


def test_trainer_build_command_points_at_a_pinned_dockerfile():
    from sandbox.backends.images import TRAINER_IMAGE, trainer_build_command

    command = trainer_build_command()
    assert command[:4] == ["docker", "build", "-t", TRAINER_IMAGE]
    dockerfile = Path(command[command.index("-f") + 1])
    base = next(line for line in dockerfile.read_text().splitlines() if line.startswith("ARG BASE_IMAGE="))
    repository, _, version = base.removeprefix("ARG BASE_IMAGE=").partition(":")
    assert repository == "pytorch/pytorch" and "cuda" in version and version != "latest"
    assert Path(command[-1], "sandbox", "backends", "Dockerfile") == dockerfile


# ----------------------------------------------------------------------------------- with an engine


@pytest.fixture
def backend(docker_engine, docker_image):
    from sandbox.backends.docker import DockerBackend

    return DockerBackend(docker_image, client=docker_engine, kill_grace_seconds=1.0)


def run(backend, inv: PhaseInvocation, stop: threading.Event | None = None):
    return backend.execute(inv, stop or threading.Event())


def report(inv: PhaseInvocation) -> dict:
    return json.loads((inv.out_dir / "report.json").read_text())


def containers_labelled(client, label: str) -> list:
    return client.containers.list(all=True, filters={"label": f"{LABEL_NAME}={label}"})


# Programs write what happened to /golf/out/report.json; `attempt` turns an action into "ok" or the
# name of the exception it raised.
PROBE_PRELUDE = """
import json, os, socket, sys
def attempt(action):
    try:
        action()
        return "ok"
    except Exception as exc:
        return type(exc).__name__
def connect(host, port):
    with socket.socket() as s:
        s.settimeout(2)
        s.connect((host, port))
def write(path):
    with open(path, "w") as f:
        f.write("x")
"""


@pytest.mark.docker
def test_noop_program_runs_and_its_output_is_logged(backend, tmp_path):
    inv = make_invocation(tmp_path, "print('hello from the sandbox'); import sys; sys.exit(3)\n")
    began = time.monotonic()
    outcome = run(backend, inv)
    elapsed = time.monotonic() - began
    assert outcome.exit_code == 3
    assert not (outcome.timed_out or outcome.stopped or outcome.oom)
    assert "hello from the sandbox" in inv.log_path.read_text()
    assert 0 < outcome.wall_seconds < elapsed
    assert elapsed < 10, f"a no-op program took {elapsed:.1f} s through execute()"


@pytest.mark.docker
def test_program_sees_the_contract_paths_as_its_user(backend, tmp_path):
    program = (
        PROBE_PRELUDE
        + """
env = {k: os.environ.get(k) for k in ("GOLF_PHASE", "GOLF_OUT", "DATA_PATH", "TOKENIZER_PATH", "HOME")}
json.dump({"env": env, "uid": os.getuid(), "cwd": os.getcwd(), "data": sorted(os.listdir("/golf/data")),
           "tokenizer": open(os.environ["TOKENIZER_PATH"], "rb").read().decode(),
           "work": attempt(lambda: write("scratch")), "home": attempt(lambda: write(os.environ["HOME"] + "/c")),
           "artifact": attempt(lambda: write("/golf/artifact/model.bin"))},
          open("/golf/out/report.json", "w"))
"""
    )
    inv = make_invocation(tmp_path, program, phase=Phase.TRAIN)
    inv = PhaseInvocation(**{**inv.__dict__, "data_files": inv.data_files[:1]})
    assert run(backend, inv).exit_code == 0
    seen = report(inv)
    assert seen["env"] == {
        "GOLF_PHASE": "train",
        "GOLF_OUT": "/golf/out",
        "DATA_PATH": "/golf/data",
        "TOKENIZER_PATH": "/golf/tokenizer/tok.model",
        "HOME": "/golf/home",
    }
    assert seen["uid"] != 0
    assert seen["cwd"] == "/golf/work"
    assert seen["data"] == ["fineweb_train_000000.bin"]  # the val shard is not there in train
    assert seen["tokenizer"] == "tokenizer"
    assert seen["work"] == seen["home"] == seen["artifact"] == "ok"
    assert (tmp_path / "artifact" / "model.bin").read_text() == "x"


@pytest.mark.docker
def test_network_is_unreachable_from_inside(backend, tmp_path):
    # A server on the host's loopback: the container has its own (empty) network namespace.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        program = (
            PROBE_PRELUDE
            + f"""
json.dump({{"public": attempt(lambda: connect("1.1.1.1", 53)),
           "host_loopback": attempt(lambda: connect("127.0.0.1", {port})),
           "bridge_gateway": attempt(lambda: connect("172.17.0.1", {port})),
           "dns": attempt(lambda: socket.getaddrinfo("pypi.org", 443)),
           "interfaces": [name for _, name in socket.if_nameindex()]}},
          open("/golf/out/report.json", "w"))
"""
        )
        inv = make_invocation(tmp_path, program)
        assert run(backend, inv).exit_code == 0
    seen = report(inv)
    assert seen["public"] != "ok" and seen["host_loopback"] != "ok" and seen["bridge_gateway"] != "ok"
    assert seen["dns"] != "ok"
    assert seen["interfaces"] == ["lo"]


@pytest.mark.docker
def test_only_the_output_folder_is_writable_in_eval(backend, tmp_path):
    program = (
        PROBE_PRELUDE
        + """
targets = ["/etc/evil", "/usr/lib/evil", "/golf/program/train_gpt.py", "/golf/artifact/model.bin",
           "/golf/data/fineweb_val_000000.bin", "/golf/tokenizer/tok.model", "/golf/check_positions.i64"]
json.dump({t: attempt(lambda t=t: write(t)) for t in targets} | {"out": attempt(lambda: write("/golf/out/x"))},
          open("/golf/out/report.json", "w"))
"""
    )
    inv = make_invocation(tmp_path, program, phase=Phase.EVAL)
    (tmp_path / "artifact" / "model.bin").write_bytes(b"model")
    assert run(backend, inv).exit_code == 0
    seen = report(inv)
    assert seen.pop("out") == "ok"
    assert all(result != "ok" for result in seen.values()), seen
    assert (tmp_path / "artifact" / "model.bin").read_bytes() == b"model"
    assert (tmp_path / "program" / "train_gpt.py").read_text() == textwrap.dedent(program)


@pytest.mark.docker
def test_host_files_that_are_not_mounted_cannot_be_read(backend, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    program = (
        PROBE_PRELUDE
        + f"""
json.dump({{"secret": attempt(lambda: open({str(secret)!r}).read()),
           "host_home": os.path.exists("/work/main/sandbox"),
           "docker_socket": os.path.exists("/var/run/docker.sock")}},
          open("/golf/out/report.json", "w"))
"""
    )
    inv = make_invocation(tmp_path, program)
    assert run(backend, inv).exit_code == 0
    assert report(inv) == {"secret": "FileNotFoundError", "host_home": False, "docker_socket": False}


@pytest.mark.docker
def test_timeout_kills_a_program_that_ignores_sigterm_and_removes_its_container(
    backend, docker_engine, tmp_path
):

    program = """
    import signal, subprocess, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    subprocess.Popen(["sleep", "300"], start_new_session=True)  # a detached child
    print("sleeping", flush=True)
    time.sleep(300)
    """
    inv = make_invocation(tmp_path, program, wall_timeout_seconds=1.0, label=f"timeout-{tmp_path.name}")
    began = time.monotonic()
    outcome = run(backend, inv)
    assert outcome.timed_out and outcome.exit_code is None and not outcome.stopped
    assert 1.0 <= outcome.wall_seconds < 8
    assert time.monotonic() - began < 15
    assert "sleeping" in inv.log_path.read_text()
    assert containers_labelled(docker_engine, inv.label) == []


@pytest.mark.docker
def test_stop_event_ends_the_run_early(backend, tmp_path):
    inv = make_invocation(tmp_path, "import time\ntime.sleep(300)\n", wall_timeout_seconds=120)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    outcome = run(backend, inv, stop)
    assert outcome.stopped and not outcome.timed_out
    assert outcome.wall_seconds < 10


@pytest.mark.docker
def test_out_of_memory_is_reported_as_oom(backend, tmp_path):
    program = "blocks = []\nwhile True:\n    blocks.append(bytearray(16 * 1024 * 1024))\n"
    inv = make_invocation(
        tmp_path, program, limits=Limits(memory_bytes=64 * 1024**2), wall_timeout_seconds=60
    )
    outcome = run(backend, inv)
    assert outcome.oom and outcome.exit_code is None and not outcome.timed_out


@pytest.mark.docker
def test_a_flooding_program_leaves_a_capped_log(backend, tmp_path):
    program = "import sys\nfor i in range(20000):\n    print('x' * 99)\nprint('THE END')\n"
    inv = make_invocation(tmp_path, program, limits=Limits(max_log_bytes=4096))
    outcome = run(backend, inv)
    assert outcome.exit_code == 0 and outcome.log_truncated
    text = inv.log_path.read_bytes()
    assert len(text) <= 4096 and text.rstrip().endswith(b"THE END")


@pytest.mark.docker
def test_missing_image_raises_with_the_build_command(docker_engine):
    from sandbox.backends.docker import DockerBackend

    with pytest.raises(SandboxUnavailable, match="is not present") as caught:
        DockerBackend("autogolf-trainer:latest", client=docker_engine)
    assert "docker build -t autogolf-trainer:latest" in caught.value.hint


@pytest.mark.docker
def test_orphans_of_a_dead_controller_are_removed_on_start_and_live_ones_kept(docker_engine, docker_image):
    from sandbox.backends.docker import DockerBackend

    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = finished.stdout.strip()
    host = socket.gethostname()
    tag = f"orphan-{os.getpid()}-{time.monotonic_ns()}"
    common = {"command": ["sleep", "300"], "network_mode": "none"}
    orphan = docker_engine.containers.create(
        docker_image,
        labels={LABEL_RUN: "a", LABEL_NAME: tag, LABEL_CONTROLLER_PID: dead_pid, LABEL_CONTROLLER_HOST: host},
        **common,
    )
    orphan.start()
    live = docker_engine.containers.create(
        docker_image, labels={LABEL_RUN: "b", LABEL_NAME: tag, **controller_labels()}, **common
    )
    try:
        DockerBackend(docker_image, client=docker_engine)  # removes orphans as it starts
        # Another session's backend may have removed the orphan first: what counts is that it is gone.
        assert [c.id for c in containers_labelled(docker_engine, tag)] == [live.id]
    finally:
        for container in containers_labelled(docker_engine, tag):
            container.remove(force=True)
