"""Published settings come with their sources, and contradictions name the file, the key and both values."""

from __future__ import annotations

from importer import (
    SettingRole,
    SettingSource,
    Severity,
    parse_readme_commands,
    read_hyperparameters,
    read_settings,
)
from tests.importer.programs import OFFICIAL, OFFICIAL_LOG, README, SUBMISSION

TABLE = read_hyperparameters(OFFICIAL)


def _folder(write_record, **files):
    names = {"readme": "README.md", "log": "train_seed42.log", "submission": "submission.json"}
    return write_record(files={"train_gpt.py": OFFICIAL, **{names.get(k, k): v for k, v in files.items()}})


def test_readme_command_with_continuations_and_exports():
    said = parse_readme_commands(README)
    (command,) = said.commands  # the data download in the second block is not a run command
    assert (command.launcher, command.program, command.nproc_per_node) == ("torchrun", "train_gpt.py", 8)
    assert said.values == (
        ("NCCL_IB_DISABLE", "1", 6),
        ("NUM_LAYERS", "9", 7),
        ("MATRIX_LR", "0.03", 7),
        ("TIE_EMBEDDINGS", "1", 7),
        ("SEED", "42", 7),
    )
    assert said.skipped == ()


def test_loops_expand_and_unknown_shell_variables_are_skipped():
    text = (
        "```bash\nfor SEED in 1 2; do\n  SEED=$SEED NUM_LAYERS=${LAYERS} torchrun --nproc_per_node 4 train_gpt.py"
        " > log_${SEED}.txt 2>&1\ndone\ncat > spec.json << 'EOF'\nNUM_LAYERS=99 torchrun train_gpt.py\nEOF\n```\n"
    )
    said = parse_readme_commands(text)
    assert [c.nproc_per_node for c in said.commands] == [4]  # the heredoc body is data, not a command
    assert said.values == (("SEED", "1", 3), ("SEED", "2", 3))
    assert [name for name, _ in said.skipped] == ["NUM_LAYERS"]


def test_python_blocks_and_non_training_commands_are_ignored():
    text = (
        "```python\nNUM_LAYERS=3\n```\n```\nDATA=1 python3 prepare_data.py\nSEED=7 python train_x.py\n```\n"
    )
    said = parse_readme_commands(text)
    assert [c.program for c in said.commands] == ["train_x.py"] and said.values == (("SEED", "7", 6),)


def test_every_source_is_kept_with_its_file_and_role(write_record):
    folder = _folder(write_record, readme=README, log=OFFICIAL_LOG, submission=SUBMISSION)
    settings = read_settings(folder, TABLE)
    lr = [(v.source, v.file, v.typed) for v in settings.values if v.name == "MATRIX_LR"]
    assert lr == [(SettingSource.README, "README.md", 0.03), (SettingSource.LOG, "train_seed42.log", 0.03)]
    seeds = {(v.source, v.typed) for v in settings.values if v.name == "SEED"}
    assert seeds == {("readme", 42), ("log", 42), ("submission", 42)}
    roles = {v.name: v.role for v in settings.values}
    assert roles["SEED"] is SettingRole.PER_RUN and roles["DATA_PATH"] is SettingRole.LOCATION
    assert roles["NCCL_IB_DISABLE"] is SettingRole.RUNTIME and roles["NUM_LAYERS"] is SettingRole.PROGRAM
    assert "RANK" not in roles  # the log prints it, but torchrun sets it
    assert settings.program_values() == {"NUM_LAYERS": 9, "MATRIX_LR": 0.03, "TIE_EMBEDDINGS": True}
    assert settings.errors() == []


def test_readme_and_log_disagreeing_is_an_error_naming_both(write_record):
    folder = _folder(
        write_record, readme=README, log=OFFICIAL_LOG.replace("matrix_lr: 0.03", "matrix_lr: 0.05")
    )
    settings = read_settings(folder, TABLE)
    (error,) = settings.errors()
    assert settings.program_values()["MATRIX_LR"] == 0.05  # what ran, should anyone go on regardless
    assert error.name == "MATRIX_LR"
    assert "README.md:7 sets 0.03" in error.message and "train_seed42.log:4 ran 0.05" in error.message


def test_value_the_program_cannot_convert_is_an_error(write_record):
    readme = "```bash\nNUM_LAYERS=9.5 TIE_EMBEDDINGS=yes torchrun train_gpt.py\n```\n"
    errors = read_settings(_folder(write_record, readme=readme), TABLE).errors()
    assert {e.name for e in errors} == {"NUM_LAYERS", "TIE_EMBEDDINGS"}
    message = next(e.message for e in errors if e.name == "NUM_LAYERS")
    assert (
        "README.md:2" in message and "'9.5'" in message and "int(...)" in message and "default 9" in message
    )


def test_unknown_names_and_path_differences_are_warnings(write_record):
    readme = "```bash\nNUM_LAYRES=9 DATA_PATH=/root/me/data TORCH_LOGS=+dynamo torchrun train_gpt.py\n```\n"
    settings = read_settings(_folder(write_record, readme=readme, log=OFFICIAL_LOG), TABLE)
    assert settings.errors() == []
    warnings = [i.message for i in settings.issues if i.severity is Severity.WARNING]
    assert any("NUM_LAYRES=9, which the program never reads" in w for w in warnings)
    assert any(
        w.startswith("DATA_PATH: README.md:2 sets /root/me/data, but train_seed42.log:3 ran")
        for w in warnings
    )
    assert not any("TORCH_LOGS" in w for w in warnings)  # for torch, not for the program


def test_log_value_the_readme_never_mentions_is_flagged(write_record):
    settings = read_settings(_folder(write_record, log=OFFICIAL_LOG), TABLE)
    (hidden,) = [i for i in settings.issues if i.name == "MATRIX_LR"]
    assert "ran 0.03, the program's default is 0.04 and the README does not set it" in hidden.message
    assert settings.program_values()["MATRIX_LR"] == 0.03  # what ran wins


def test_logs_that_differ_from_each_other_are_a_warning(write_record):
    folder = _folder(
        write_record,
        log=OFFICIAL_LOG,
        **{"train_seed7.log": OFFICIAL_LOG.replace("num_layers: 9", "num_layers: 10")},
    )
    issues = [i for i in read_settings(folder, TABLE).issues if i.name == "NUM_LAYERS"]
    assert [i.severity for i in issues] == [Severity.WARNING, Severity.WARNING]
    assert "the logs differ: train_seed42.log ran 9, train_seed7.log ran 10" in issues[0].message


def test_readme_running_a_file_the_folder_lacks_is_a_warning(write_record):
    readme = "```bash\nSEED=1 torchrun --nproc_per_node=8 train_gpt_sweep.py\n```\n"
    issues = read_settings(_folder(write_record, readme=readme), TABLE).issues
    assert any("runs train_gpt_sweep.py, which is not in the record folder" in i.message for i in issues)


def test_a_folder_with_nothing_published_has_no_settings(write_record):
    settings = read_settings(_folder(write_record), TABLE)
    assert (settings.values, settings.issues, settings.program_values()) == ((), (), {})
