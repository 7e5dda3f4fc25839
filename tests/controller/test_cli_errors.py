"""Faults of autogolf's own (autogolf.errors.GolfError) end a command with their message and hint, exit
status 2 and no traceback; any other exception is a bug and keeps its traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from agent.errors import AgentConfigError
from autogolf.errors import DataError, GolfError
from controller.cli.terminal import GolfCommands
from controller.errors import GitStoreError
from sandbox.errors import SandboxUnavailable
from tests.controller.campaigns import write_campaign

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY_VARIABLE = "AUTOGOLF_TEST_UNSET_API_KEY"


def autogolf(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real command line, as `autogolf` runs it, with the test's API key variable unset."""
    env = {k: v for k, v in os.environ.items() if k != KEY_VARIABLE}
    env["PYTHONPATH"] = str(REPO_ROOT)
    command = [sys.executable, "-m", "controller.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def assert_clean_error(done: subprocess.CompletedProcess, message: str, hint: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert re.search(rf"^error: {message}", done.stderr, re.MULTILINE), done.stderr
    assert re.search(rf"^hint: {hint}", done.stderr, re.MULTILINE), done.stderr


@pytest.fixture
def llm_campaign(tmp_path, tiny_data) -> Path:
    """A campaign whose agent is an LLM reached with a key from an environment variable nobody set."""
    toml = write_campaign(
        tmp_path, dataset_dir=tiny_data.dataset_dir, tokenizer_path=tiny_data.tokenizer_path
    )
    text = re.sub(
        r"\[agent\]\n(?:[^\[].*\n)*",
        f'[agent]\nproposer = "llm"\napi_key_env = "{KEY_VARIABLE}"\n',
        toml.read_text(encoding="utf-8"),
        count=1,
    )
    # Past the refusal to run LLM code unconfined where bubblewrap is missing: that is another fault.
    text = text.replace(
        '[sandbox]\nbackend = "local"\n', '[sandbox]\nbackend = "local"\nallow_unconfined_local = true\n'
    )
    toml.write_text(text, encoding="utf-8")
    assert f'api_key_env = "{KEY_VARIABLE}"' in text and "allow_unconfined_local = true" in text
    return toml


@pytest.mark.slow
def test_a_worker_without_its_api_key_says_which_variable_to_set(llm_campaign, tmp_path):
    remote = tmp_path / "shared.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    done = autogolf(
        "worker", str(llm_campaign), "--storage", storage, "--git-remote", str(remote), cwd=tmp_path
    )
    assert_clean_error(
        done, f"the environment variable {KEY_VARIABLE} is not set", f"export {KEY_VARIABLE}=<your key>"
    )


@pytest.mark.slow
def test_a_campaign_run_without_its_api_key_says_which_variable_to_set(llm_campaign, tmp_path):
    done = autogolf("run", str(llm_campaign), cwd=tmp_path)
    assert_clean_error(
        done, f"the environment variable {KEY_VARIABLE} is not set", f"export {KEY_VARIABLE}=<your key>"
    )


def test_bad_data_input_is_reported_not_raised(tmp_path):
    done = autogolf("data", "build", str(tmp_path / "missing.txt"), "--dest", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert re.search(r"^error: .*missing\.txt: no such file or folder", done.stderr, re.MULTILINE), (
        done.stderr
    )


def _app_raising(exc: BaseException) -> typer.Typer:
    app = typer.Typer(cls=GolfCommands)

    @app.command()
    def fails() -> None:
        raise exc

    @app.command()
    def other() -> None:  # a second command, so `fails` is a subcommand as in `autogolf`
        pass

    return app


@pytest.mark.parametrize(
    "exc",
    [
        SandboxUnavailable("Docker is not running", hint="start it with `systemctl start docker`"),
        AgentConfigError("the key is missing", hint="export OPENAI_API_KEY=<your key>"),
        DataError("corpus.txt: not UTF-8", hint="convert the file to UTF-8"),
        GitStoreError("git refused", hint="run git fsck"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_every_kind_of_golf_error_ends_the_command_with_message_and_hint(exc):
    assert isinstance(exc, GolfError)
    done = CliRunner().invoke(_app_raising(exc), ["fails"])
    assert done.exit_code == 2
    assert f"error: {exc.message}\nhint: {exc.hint}\n" in done.output
    assert done.exception is None or isinstance(done.exception, SystemExit)


def test_an_error_without_a_hint_prints_only_the_message():
    done = CliRunner().invoke(_app_raising(DataError("val.bin: no shards")), ["fails"])
    assert done.exit_code == 2 and "error: val.bin: no shards\n" in done.output
    assert "hint" not in done.output


def test_any_other_exception_is_a_bug_and_keeps_its_traceback():
    done = CliRunner().invoke(_app_raising(KeyError("oops")), ["fails"])
    assert done.exit_code == 1 and isinstance(done.exception, KeyError)
