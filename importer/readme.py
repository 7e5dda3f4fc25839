"""The run commands a record's README gives, and the environment settings they pass.

READMEs show the command in a fenced shell block: ``KEY=value`` assignments in front of ``torchrun``,
often one per line with ``\\`` continuations, sometimes ``export KEY=value`` lines before it or a
``for SEED in 42 0 1234; do ... SEED=$SEED torchrun ...`` loop (2026-04-19). Words are split with
:mod:`shlex` as a POSIX shell would; only commands that run the record count (torchrun, python on a
``train*.py``, a shell script), so a data download with its own ``KEY=value`` prefix is left out.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict

_SHELL_FENCES = {"", "bash", "sh", "shell", "console", "zsh"}
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")


class RunCommand(BaseModel):
    """A command in the README that runs the record."""

    model_config = ConfigDict(frozen=True)

    line: int
    launcher: str  # torchrun, python3, bash ...
    program: str  # the script it runs, as written
    nproc_per_node: int | None
    env: tuple[tuple[str, str], ...]  # assignments in front of it and exports before it, as written


class ReadmeCommands(BaseModel):
    """What a README's shell blocks say about running the record."""

    model_config = ConfigDict(frozen=True)

    commands: tuple[RunCommand, ...]
    values: tuple[tuple[str, str, int], ...]  # (name, value as written, line), loop variables expanded
    skipped: tuple[tuple[str, str], ...]  # (name, why it was not taken)


def parse_readme_commands(text: str) -> ReadmeCommands:
    """The run commands in the README's shell code blocks, the settings they pass, and what was skipped.

    A command runs the record when it is torchrun, python on a ``train*.py`` or a shell script; others
    (data downloads) are ignored. Loop variables expand to each of their values; an unknown ``$VAR``
    is skipped with a reason.
    """
    commands: list[RunCommand] = []
    pairs: list[tuple[str, str, int]] = []
    skipped: list[tuple[str, str]] = []
    for block in _shell_blocks(text):
        exports: list[tuple[str, str, int]] = []
        loops: dict[str, list[str]] = {}
        for line, logical in block:
            for words in _simple_commands(logical):
                if words[:1] == ["for"] and len(words) >= 4 and words[2] == "in":
                    loops[words[1]] = [w for w in words[3:] if w != "do"]
                    continue
                if words[:1] == ["export"]:
                    exports += [(m[1], m[2], line) for w in words[1:] if (m := _ASSIGNMENT.fullmatch(w))]
                    continue
                assignments: list[tuple[str, str, int]] = []
                while words and (match := _ASSIGNMENT.fullmatch(words[0])):
                    assignments.append((match[1], match[2], line))
                    words = words[1:]
                command = _run_command(words, line, exports + assignments)
                if command is None:
                    continue
                commands.append(command)
                for name, value, at in exports + assignments:
                    expanded = _expand(value, loops)
                    if expanded is None:
                        skipped.append(
                            (
                                name,
                                f"{name}={value} (line {at}) uses a shell variable it never sets; not checked",
                            )
                        )
                    pairs += [(name, v, at) for v in expanded or []]
    return ReadmeCommands(commands=tuple(commands), values=tuple(pairs), skipped=tuple(skipped))


def _shell_blocks(text: str) -> Iterator[list[tuple[int, str]]]:
    """Each fenced shell block as logical lines (continuations joined, heredoc bodies dropped)."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        fence = lines[index].strip()
        index += 1
        if not fence.startswith("```"):
            continue
        language = fence[3:].strip().lower()
        block: list[tuple[int, str]] = []
        pending, start, heredoc = "", 0, None
        while index < len(lines) and not lines[index].strip().startswith("```"):
            raw, number = lines[index], index + 1
            index += 1
            if heredoc is not None:
                heredoc = None if raw.strip() == heredoc else heredoc
                continue
            stripped = raw.strip().removeprefix("$ ")
            if not pending:
                start = number
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            logical, pending = pending + stripped, ""
            marker = _HEREDOC.search(logical)
            heredoc = marker[1] if marker else None
            block.append((start, logical))
        index += 1  # the closing fence
        if language in _SHELL_FENCES:
            yield block


def _simple_commands(logical: str) -> Iterator[list[str]]:
    """The words of each command on a line, split at ``;``, ``&&``, ``||``, ``|`` and ``&``."""
    lexer = shlex.shlex(logical, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: prose in a code block
        return
    words: list[str] = []
    for token in tokens:
        if token and set(token) <= set(";&|"):
            if words:
                yield words
            words = []
        elif token not in ("do", "done", "then", "fi"):
            words.append(token)
    if words:
        yield words


def _run_command(words: list[str], line: int, env: list[tuple[str, str, int]]) -> RunCommand | None:
    if not words:
        return None
    launcher = Path(words[0]).name
    scripts = [w for w in words[1:] if w.endswith((".py", ".sh"))]
    if launcher == "torchrun" or (launcher.startswith("python") and "torch.distributed.run" in words):
        program = next((w for w in scripts if w.endswith(".py")), "")
    elif launcher.startswith("python"):
        program = scripts[0] if scripts and Path(scripts[0]).name.startswith("train") else ""
    elif launcher in ("bash", "sh"):
        program = next((w for w in scripts if w.endswith(".sh")), "")
    else:
        program = words[0] if words[0].endswith(".sh") else ""
    if not program:
        return None
    nproc = None
    for index, word in enumerate(words):
        if word.startswith("--nproc_per_node") or word.startswith("--nproc-per-node"):
            value = word.partition("=")[2] or (words[index + 1] if index + 1 < len(words) else "")
            nproc = int(value) if value.isdigit() else None
    pairs = tuple((name, value) for name, value, _ in env)
    return RunCommand(line=line, launcher=launcher, program=program, nproc_per_node=nproc, env=pairs)


def _expand(value: str, loops: dict[str, list[str]]) -> list[str] | None:
    """``value`` with loop variables substituted (one result per loop value); None for an unknown one."""
    names = [a or b for a, b in _VARIABLE.findall(value)]
    if not names:
        return [value]
    if len(set(names)) != 1 or names[0] not in loops:
        return None
    return [_VARIABLE.sub(item, value) for item in loops[names[0]]]
