"""Environment reads become knobs (constant defaults) or fixed/derived entries, with or without ast."""

from __future__ import annotations

import pytest

from importer import (
    Cast,
    ParseMethod,
    ReadKind,
    ReadLocation,
    RecordImportError,
    read_hyperparameters,
    render_knob_table,
)
from sandbox.knobs import parse_knob_table
from tests.importer.programs import MODULE_LEVEL, OFFICIAL, OFFICIAL_KNOBS, PEP701


def test_official_class_gives_one_knob_per_literal_read_with_the_programs_conversion():
    table = read_hyperparameters(OFFICIAL)
    assert (table.method, table.location) == (ParseMethod.AST, ReadLocation.CLASS)
    assert [(k.name, k.type, k.default) for k in table.knobs()] == OFFICIAL_KNOBS
    assert all(not k.searchable for k in table.knobs())  # ranges are a search decision, not the record's
    casts = {r.name: r.cast for r in table.reads}
    assert casts["TIE_EMBEDDINGS"] is Cast.BOOL_INT and casts["BIG_STEPS"] is Cast.INT_FLOAT
    assert casts["VE_LAYERS"] is Cast.STR and casts["MATRIX_LR"] is Cast.FLOAT
    assert table.read("NUM_LAYERS").attribute == "num_layers"


def test_defaults_that_depend_on_other_settings_are_derived_not_knobs():
    table = read_hyperparameters(OFFICIAL)
    kinds = {r.name: (r.kind, r.default_text) for r in table.reads if not r.is_knob}
    assert kinds == {
        "RUN_ID": (ReadKind.DERIVED, "str(uuid.uuid4())"),
        "LOGFILE": (ReadKind.DERIVED, "f'logs/{run_id}.txt'"),
        "EVAL_SEQ_LEN": (ReadKind.DERIVED, "vocab_size"),
        "RANK": (ReadKind.LAUNCHER, "'0'"),  # torchrun's, never a setting
    }


def test_module_level_reads_when_there_is_no_class():
    table = read_hyperparameters(MODULE_LEVEL)
    assert table.location is ReadLocation.MODULE
    reads = {r.name: r for r in table.reads}
    assert set(reads) == {"NUM_LAYERS", "LR", "FAST", "STEPS"}  # not the one inside train()
    assert reads["LR"].default == 0.1 and reads["LR"].cast is Cast.FLOAT
    assert reads["STEPS"].kind is ReadKind.NO_DEFAULT
    assert reads["FAST"].cast is Cast.STR and reads["FAST"].default == "0"


def test_source_this_python_cannot_parse_is_read_statement_by_statement():
    table = read_hyperparameters(PEP701)
    assert table.method is ParseMethod.TEXT
    assert [(k.name, k.default) for k in table.knobs()] == [
        ("NUM_LAYERS", 11),
        ("MATRIX_LR", 0.02),
        ("MODEL_DIM", 512),
    ]
    tag = table.read("TAG")  # only inside a 3.12 f-string: found, but its cast and default are unknown
    assert tag is not None and tag.kind is ReadKind.DERIVED and "does not parse" in tag.note
    assert len(table.unread) == 1


def test_text_path_reads_the_same_as_ast_where_both_can():
    broken = OFFICIAL + 'print(f"{", ".join(["x"])}")\n'
    by_ast, by_text = read_hyperparameters(OFFICIAL), read_hyperparameters(broken)
    assert by_text.method is ParseMethod.TEXT
    assert by_text.reads == by_ast.reads


def test_minified_one_line_class_is_read_in_both_paths():
    head = "import os\nclass Hyperparameters:a=int(os.environ.get('A',2*3));b=float(os.environ.get('B',.5))"
    tail = "\nx=int(os.environ.get('NOT_IN_CLASS',1))\n"
    # the minified 3.12 records keep their f-strings on the class's own line: only `;` keeps A and B apart
    for text in (head + ";c=f'{os.sep}'" + tail, head + ';c=f"{"q"}"' + tail):
        table = read_hyperparameters(text)
        assert [(k.name, k.default) for k in table.knobs()] == [("A", 6), ("B", 0.5)], table.method


def test_a_name_read_with_different_defaults_is_derived():
    text = (
        "import os\nclass Hyperparameters:\n    fast = int(os.environ.get('FAST', 0))\n"
        "    if fast:\n        steps = int(os.environ.get('STEPS', 10))\n"
        "    else:\n        steps = int(os.environ.get('STEPS', 1000))\n"
    )
    steps = read_hyperparameters(text).read("STEPS")
    assert steps.kind is ReadKind.DERIVED and "read 2 times" in steps.note and steps.default is None


def test_default_the_cast_rejects_is_derived_with_a_note():
    read = read_hyperparameters("import os\nN = int(os.environ.get('N', 'many'))\n").read("N")
    assert read.kind is ReadKind.DERIVED and "does not convert" in read.note


def test_rendered_table_round_trips_through_the_sandbox_parser():
    table = read_hyperparameters(OFFICIAL)
    others = [r for r in table.reads if not r.is_knob]
    block = render_knob_table(table.knobs(), others=others)
    assert parse_knob_table(block) == table.knobs()
    assert "# RUN_ID (str, derived): default str(uuid.uuid4())" in block


def test_program_without_settings_is_an_error():
    with pytest.raises(RecordImportError, match="finds no settings"):
        read_hyperparameters("print('hello')\n", filename="train_gpt.py")
