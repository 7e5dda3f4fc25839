"""The knob table is read statically (no import) and rewritten in place."""

from __future__ import annotations

import pytest

from sandbox.knobs import KnobTableError, parse_knob_table, rewrite_knob_defaults

PROGRAM = """\
import os  # the program is never imported by the parser

def Knob(name, type, default, **kw):
    return name, type(os.environ.get(name, default))

KNOBS = [
    Knob("NUM_LAYERS", int, 9, low=2, high=16, help="transformer blocks"),
    Knob("MATRIX_LR", float, 0.04,
         low=0.005, high=0.2, log=True),  # Muon lr
    Knob("COMPRESSOR", str, "auto", choices=("auto", "zlib", "zstd")),
    Knob("TIE_EMBEDDINGS", bool, True, choices=(True, False)),
    Knob("DATA_PATH", str, "./data"),
]
"""


def test_parses_every_field_in_declaration_order():
    knobs = parse_knob_table(PROGRAM)
    assert [k.name for k in knobs] == ["NUM_LAYERS", "MATRIX_LR", "COMPRESSOR", "TIE_EMBEDDINGS", "DATA_PATH"]
    layers, lr, comp, tie, data = knobs
    assert (layers.type, layers.default, layers.low, layers.high, layers.help) == (
        "int",
        9,
        2,
        16,
        "transformer blocks",
    )
    assert lr.log and lr.low == 0.005 and lr.default == 0.04
    assert comp.choices == ("auto", "zlib", "zstd")
    assert tie.type == "bool" and tie.default is True
    assert [k.searchable for k in knobs] == [True, True, True, True, False]


def test_parser_never_runs_the_program(tmp_path):
    marker = tmp_path / "ran"
    source = f"open({str(marker)!r}, 'w').write('x')\n" + PROGRAM
    parse_knob_table(source)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("X = 1\n", "no module-level `KNOBS"),
        ("KNOBS = [Knob('A', int, 1)]\nKNOBS = []\n", "assigned more than once"),
        ("KNOBS = {'A': 1}\n", "must be a list literal"),
        ("KNOBS = [dict(name='A')]\n", "must be a call Knob("),
        ("KNOBS = [Knob('A', int)]\n", "exactly three positional"),
        ("KNOBS = [Knob('A', list, [])]\n", "type must be one of"),
        ("KNOBS = [Knob('A', int, DEFAULT)]\n", "default must be a literal, not 'DEFAULT'"),
        ("KNOBS = [Knob('A', int, 1.5)]\n", "not of type int"),
        ("KNOBS = [Knob('A', int, 3, low=5, high=2)]\n", "above high"),
        ("KNOBS = [Knob('A', float, 0.1, low=0.0, high=1.0, log=True)]\n", "must be positive"),
        ("KNOBS = [Knob('A', int, 3, low=1)]\n", "low and high must be given together"),
        ("KNOBS = [Knob('A', int, 3, lo=1, high=2)]\n", "unknown keyword 'lo'"),
        ("KNOBS = [Knob('A', int, 1), Knob('A', int, 2)]\n", "declared twice"),
        ("KNOBS = [Knob('lower', int, 1)]\n", "UPPER_CASE"),
        ("KNOBS = [\n", "syntax error"),
    ],
)
def test_malformed_table_gives_a_clear_error(table, message):
    with pytest.raises(KnobTableError, match=None) as info:
        parse_knob_table(table, filename="cand.py")
    assert message in str(info.value)
    assert str(info.value).startswith("cand.py")


def test_knob_parse_and_render_round_trip():
    layers, lr, comp, tie, _ = parse_knob_table(PROGRAM)
    assert layers.parse(layers.render(12)) == 12
    assert lr.parse(lr.render(0.0123)) == 0.0123
    assert comp.parse(comp.render("zstd")) == "zstd"
    assert tie.parse(tie.render(False)) is False
    with pytest.raises(ValueError, match="TIE_EMBEDDINGS"):
        tie.parse("maybe")


def test_rewrite_bakes_values_into_defaults_and_keeps_layout():
    out = rewrite_knob_defaults(PROGRAM, {"NUM_LAYERS": 11, "MATRIX_LR": 0.02, "COMPRESSOR": "zstd"})
    assert {k.name: k.default for k in parse_knob_table(out)} == {
        "NUM_LAYERS": 11,
        "MATRIX_LR": 0.02,
        "COMPRESSOR": "zstd",
        "TIE_EMBEDDINGS": True,
        "DATA_PATH": "./data",
    }
    assert "# Muon lr" in out and 'help="transformer blocks"' in out
    assert out.count("\n") == PROGRAM.count("\n")


def test_rewrite_rejects_unknown_names_and_wrong_types():
    with pytest.raises(KnobTableError, match="no knob named NOPE"):
        rewrite_knob_defaults(PROGRAM, {"NOPE": 1})
    with pytest.raises(KnobTableError, match="not of type int"):
        rewrite_knob_defaults(PROGRAM, {"NUM_LAYERS": "many"})
