"""What a program needs is read from its text; the check against this machine reports what is missing."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

from importer import Need, Requirement, RequirementKind, find_requirements, missing_requirements
from importer.requirements import KNOWN_PACKAGES, Provider
from tests.importer.programs import OFFICIAL, PEP701, SIDECAR

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _by_name(requirements):
    return {r.name: r for r in requirements}


def test_official_program_needs_cuda_nccl_fa3_and_torch():
    found = _by_name(find_requirements(OFFICIAL, settings={"VOCAB_SIZE": "1024", "DATA_PATH": "./d"}))
    assert found["cuda"].need is Need.REQUIRED and "raises 'CUDA is required'" in found["cuda"].message
    assert found["nccl"].kind is RequirementKind.NCCL
    assert "FlashAttention 3" in found["flash_attn_interface"].message
    assert found["torch"].need is Need.REQUIRED and "autogolf[train]" in found["torch"].hint
    assert found["zstandard"].need is Need.OPTIONAL  # inside try/except ImportError
    assert found["nvidia-smi"].kind is RequirementKind.TOOL
    assert found["torch.compile(fullgraph=True)"].need is Need.NOTE
    assert "DATA_PATH=./d" in found["validation shards"].message
    assert "vocabulary 1024" in found["tokenizer"].message
    assert not {"os", "subprocess", "uuid"} & set(found)  # the standard library needs nothing


def test_tools_are_found_in_subprocess_calls_and_guards_make_them_optional():
    text = (
        "import shutil, subprocess as sp\n"
        "sp.run(['pyminify', '-'], check=True)\n"
        "try:\n    sp.check_call('lrzip -z model.bin', shell=True)\nexcept FileNotFoundError:\n    pass\n"
        "if shutil.which('zstd'):\n    pass\n"
    )
    found = _by_name(find_requirements(text))
    assert found["pyminify"].need is Need.REQUIRED and "python-minifier" in found["pyminify"].hint
    assert found["lrzip"].need is Need.OPTIONAL and "apt-get install lrzip" in found["lrzip"].hint
    assert found["zstd"].need is Need.OPTIONAL and "looks for" in found["zstd"].message


def test_byte_sidecar_is_named_with_how_to_build_it(write_record):
    folder = write_record(files={"train_gpt.py": SIDECAR, "prepare_data_bytes.py": "", "tok/t.model": ""})
    found = _by_name(find_requirements(SIDECAR, folder=folder, settings={"VOCAB_SIZE": "8192"}))
    sidecar = found["byte sidecar"]
    assert "fineweb_val_bytes_*.bin" in sidecar.message and sidecar.kind is RequirementKind.DATA
    assert "prepare_data_bytes.py" in sidecar.hint and "UTF-8 length" in sidecar.hint
    assert "the record ships tok/t.model" in found["tokenizer"].message
    assert "fineweb_val_*.bin" in found["validation shards"].message
    assert "cuda" not in found


def test_python_312_syntax_is_a_minimum_version():
    found = _by_name(find_requirements(PEP701))
    assert found["3.12"].kind is RequirementKind.PYTHON and "PEP 701" in found["3.12"].message
    assert found["3.12"].line == 6


def test_imports_are_still_found_when_the_file_does_not_parse():
    text = OFFICIAL + 'print(f"{", ".join(["x"])}")\n'
    names = {(r.name, r.need) for r in find_requirements(text)}
    assert {
        ("torch", Need.REQUIRED),
        ("zstandard", Need.OPTIONAL),
        ("flash_attn_interface", Need.REQUIRED),
    } <= names


def test_sibling_modules_are_part_of_the_record_not_packages(write_record):
    text = "import lossless_caps\nimport caseops_helpers\n"
    folder = write_record(files={"lossless_caps.py": ""})
    assert [r.name for r in find_requirements(text, folder=folder)] == ["caseops_helpers"]


def test_missing_requirements_checks_this_machine():
    def requirement(kind, name, need=Need.REQUIRED):
        return Requirement(kind=kind, name=name, need=need, message="m", hint="h")

    present = [
        requirement(RequirementKind.PACKAGE, "json"),
        requirement(RequirementKind.TOOL, "sh"),
        requirement(RequirementKind.PYTHON, f"{sys.version_info.major}.{sys.version_info.minor}"),
    ]
    absent = [
        requirement(RequirementKind.PACKAGE, "no_such_module_for_autogolf_tests"),
        requirement(RequirementKind.TOOL, "no-such-tool-for-autogolf-tests", Need.OPTIONAL),
        requirement(RequirementKind.PYTHON, "99.0"),
    ]
    unchecked = [
        requirement(RequirementKind.DATA, "tokenizer"),
        requirement(RequirementKind.PACKAGE, "x", Need.NOTE),
    ]
    assert missing_requirements(present + absent + unchecked) == tuple(absent)


def test_cuda_is_missing_where_torch_is_not_installed(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    cuda = Requirement(kind=RequirementKind.CUDA, name="cuda", need=Need.REQUIRED, message="m", hint="h")
    nccl = cuda.model_copy(update={"kind": RequirementKind.NCCL, "name": "nccl"})
    assert missing_requirements([cuda, nccl]) == (cuda, nccl)


def test_known_packages_agree_with_pyproject():
    project = tomllib.loads(PYPROJECT.read_text())["project"]

    def names(specs):
        return {
            spec.split(">")[0].split("=")[0].split("[")[0].split(";")[0].strip().lower() for spec in specs
        }

    core, train = names(project["dependencies"]), names(project["optional-dependencies"]["train"])
    for module, info in KNOWN_PACKAGES.items():
        if info.provided_by is Provider.CORE:
            assert info.distribution.lower() in core, module
        elif info.provided_by is Provider.TRAIN:
            assert info.distribution.lower() in train and info.distribution.lower() not in core, module
        else:
            assert info.distribution.lower() not in core | train, module
