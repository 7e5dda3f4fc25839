"""The agent's static program checks on the real programs (the seed program and the unigram trainer, read
from disk and edited a little): empty changes, unread knobs, a knob table changed after its literal, and
edits of what a program writes to the scored files."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.hashing import normalized_source_hash
from agent.program_checks import declared_knobs, reading_style, same_code, table_mutations, unread_knobs
from agent.scoring_paths import scoring_change

REPO = Path(__file__).resolve().parents[2]
BASELINE = (REPO / "baseline" / "train_gpt.py").read_text(encoding="utf-8")
UNIGRAM = (REPO / "tests" / "programs" / "unigram_trainer.py").read_text(encoding="utf-8")

BASELINE_TABLE_END = '    Knob("EVAL_STRIDE", int, 0, choices=(0, 64, 128, 256, 512), help="sliding window step; 0 = no overlap"),\n]\n'
UNIGRAM_TABLE_END = '    Knob("TOKENIZER_PATH", str, "./data/tokenizers/tiny_512_bpe.model"),\n]\n'
RELU2 = "        return self.proj(F.relu(self.fc(x)).square())\n"
LEAKY = "        return self.proj(F.leaky_relu(self.fc(x), negative_slope=0.5).square())\n"


def edit(source: str, old: str, new: str) -> str:
    assert source.count(old) == 1, f"expected one {old!r}"
    return source.replace(old, new)


def add_knob(source: str, entry: str) -> str:
    """``source`` with ``entry`` as the table's last knob."""
    end = BASELINE_TABLE_END if source is BASELINE else UNIGRAM_TABLE_END
    return edit(source, end, end.removesuffix("]\n") + f"    {entry},\n]\n")


def line_of(source: str, text: str) -> int:
    """The 1-based number of the one line of ``source`` that contains ``text``."""
    (number,) = [n for n, line in enumerate(source.splitlines(), start=1) if text in line]
    return number


# ---- empty changes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "old", "new"),
    [
        (BASELINE, '    """relu^2 MLP (So et al., Primer, 2021)."""\n', '    """A squared-ReLU MLP."""\n'),
        (BASELINE, "autogolf seed program: a complete", "autogolf's seed: one complete"),  # module docstring
        (
            UNIGRAM,
            '    """Score targets val[1..n] with ``scorer(val, logp, n)`` (a function position -> log-prob row)."""\n',
            '    """Score every target."""\n',
        ),
    ],
    ids=["baseline-class", "baseline-module", "unigram-function"],
)
def test_a_docstring_only_change_is_the_same_code_though_its_hash_differs(source, old, new):
    child = edit(source, old, new)
    assert normalized_source_hash(child) != normalized_source_hash(source)  # what the hash alone misses
    assert same_code(child, source)


def test_a_comment_only_or_layout_change_is_the_same_code():
    child = edit(BASELINE, RELU2, RELU2.rstrip("\n") + "  # squared ReLU\n\n")
    assert same_code(child, BASELINE)
    assert same_code(edit(UNIGRAM, "    steps = 4\n", "    steps = (4)  # four chunks\n"), UNIGRAM)


def test_a_real_change_or_a_new_docstring_statement_elsewhere_is_not_the_same_code():
    assert not same_code(edit(BASELINE, RELU2, LEAKY), BASELINE)
    assert not same_code(edit(UNIGRAM, "    steps = 4\n", "    steps = 5\n"), UNIGRAM)
    assert not same_code("def f(:\n", "def f(:\n")  # what does not parse is never called inert here


# ---- knobs the program never reads ---------------------------------------------------------------


@pytest.mark.parametrize(("source", "count"), [(BASELINE, 47), (UNIGRAM, 8)], ids=["baseline", "unigram"])
def test_every_knob_of_the_seed_program_and_the_unigram_trainer_counts_as_read(source, count):
    names = declared_knobs(source)
    assert len(names) == count
    assert unread_knobs(names, [source]) == []


def test_a_knob_only_declared_is_unread_even_when_its_help_text_or_a_message_names_it():
    baseline = add_knob(
        BASELINE, 'Knob("WIDTH_MULT", int, 3, low=1, high=4, help="WIDTH_MULT scales the MLP")'
    )
    baseline = edit(baseline, '    """relu^2 MLP', '    """WIDTH_MULT: relu^2 MLP')
    assert unread_knobs(["WIDTH_MULT"], [baseline]) == ["WIDTH_MULT"]
    unigram = add_knob(UNIGRAM, 'Knob("TEMPERATURE", float, 1.0, low=0.5, high=2.0)')
    unigram = edit(unigram, 'print(f"eval: val_loss', 'print(f"TEMPERATURE= eval: val_loss')
    assert unread_knobs(["TEMPERATURE"], [unigram]) == ["TEMPERATURE"]


def test_a_new_knob_read_the_way_each_program_reads_its_knobs_counts_as_read():
    baseline = add_knob(BASELINE, 'Knob("WIDTH_MULT", int, 3, low=1, high=4)')
    baseline = edit(
        baseline, "MLP(dim, cfg.mlp_mult)", "MLP(dim, cfg.width_mult)"
    )  # read_settings' cfg.<lower>
    assert unread_knobs(["WIDTH_MULT"], [baseline]) == []
    unigram = add_knob(UNIGRAM, 'Knob("TEMPERATURE", float, 1.0, low=0.5, high=2.0)')
    unigram = edit(
        unigram,
        '    logp = log_probs(counts, cfg["SMOOTHING"])\n    val =',
        '    logp = log_probs(counts, cfg["SMOOTHING"] * cfg["TEMPERATURE"])\n    val =',
    )
    assert unread_knobs(["TEMPERATURE"], [unigram]) == []
    # Read in another file of the program, or from the environment, also counts.
    assert unread_knobs(["TEMPERATURE"], [UNIGRAM, 'import os\nT = os.environ.get("TEMPERATURE")\n']) == []


def test_the_reading_style_is_the_one_each_program_uses():
    style = reading_style(BASELINE, declared_knobs(BASELINE))
    assert style is not None and style.expression("WIDTH_MULT") == "cfg.width_mult"
    assert style.describe() == (
        "This program reads each knob as an attribute of `cfg` under its lower-case name "
        "(VOCAB_SIZE is `cfg.vocab_size`)"
    )
    style = reading_style(UNIGRAM, declared_knobs(UNIGRAM))
    assert style is not None and style.expression("TEMPERATURE") == 'cfg["TEMPERATURE"]'
    assert (
        style.describe()
        == 'This program reads each knob by name from `cfg` (SMOOTHING is `cfg["SMOOTHING"]`)'
    )


# ---- a knob table changed after its literal ------------------------------------------------------

NEW = 'Knob("WIDTH_MULT", int, 3, low=1, high=4)'


@pytest.mark.parametrize(
    "added",
    [
        f"KNOBS.append({NEW})\n",
        f"KNOBS.extend([{NEW}])\n",
        f"KNOBS.insert(0, {NEW})\n",
        f"KNOBS += [{NEW}]\n",
        f"KNOBS = KNOBS + [{NEW}]\n",
        'for _name in ("WIDTH_MULT", "DEPTH_MULT"):\n    KNOBS.append(Knob(_name, int, 1))\n',
        f"if True:\n    KNOBS[0] = {NEW}\n",
        f"def _more_knobs():\n    KNOBS.append({NEW})\n\n\n_more_knobs()\n",
        f"def _more_knobs():\n    global KNOBS\n    KNOBS = [*KNOBS, {NEW}]\n",
    ],
    ids=[
        "append",
        "extend",
        "insert",
        "plus-equals",
        "reassigned",
        "loop",
        "item",
        "in-a-function",
        "global",
    ],
)
def test_a_change_of_knobs_after_its_literal_is_found_with_its_line(added):
    for source, end in ((BASELINE, BASELINE_TABLE_END), (UNIGRAM, UNIGRAM_TABLE_END)):
        child = edit(source, end, end + "\n" + added)
        found = table_mutations(child)
        assert found, added
        start = source.index(end) + len(end)
        added_lines = range(
            source[:start].count("\n") + 2, child.count("\n") + 1 - source[start:].count("\n")
        )
        number, text = found[0].removeprefix("line ").split(": ", 1)
        assert int(number) in added_lines and text == child.splitlines()[int(number) - 1].strip()


def test_reading_knobs_or_building_another_list_is_not_a_change_of_the_table():
    assert table_mutations(BASELINE) == [] and table_mutations(UNIGRAM) == []
    local = (
        "def extra_knobs():\n    more = list(KNOBS)\n    more.append(1)\n    KNOBS_SEEN = len(KNOBS)\n"
        "    return more, KNOBS_SEEN\n\n\ndef shadow():\n    KNOBS = []\n    KNOBS.append(1)\n    return KNOBS\n"
    )
    assert table_mutations(edit(UNIGRAM, UNIGRAM_TABLE_END, UNIGRAM_TABLE_END + "\n" + local)) == []


# ---- edits of what the program writes to the scored files ----------------------------------------


def test_clamping_the_nll_where_the_seed_program_writes_it_names_run_eval_and_the_line():
    old = '        result.nll.numpy().astype("<f4").tofile(out_dir / "val_nll.f32")\n'
    child = edit(BASELINE, old, old.replace("result.nll.numpy()", "result.nll.clamp(max=20.0).numpy()"))
    line = line_of(child, "result.nll.clamp(max=20.0)")
    assert scoring_change(BASELINE, child) == (
        f"edits `run_eval`, which writes val_nll.f32, check_rows.f32: lines {line}"
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # scale the NLL inside the scorer that run_eval calls
        (
            "        nll[(st_t[:, None] + j[None, :])[keep]] = token_nll[keep]\n",
            "        nll[(st_t[:, None] + j[None, :])[keep]] = 0.9 * token_nll[keep]\n",
        ),
        # filter positions
        (
            "        keep = j[None, :] >= fs_t[:, None]\n",
            "        keep = (j[None, :] >= fs_t[:, None]) & (token_nll < 15.0)\n",
        ),
        # an in-place clamp, inserted
        ("    all_reduce_(rt, nll)\n", "    nll.clamp_(max=12.0)\n    all_reduce_(rt, nll)\n"),
    ],
    ids=["scale", "filter", "clamp-in-place"],
)
def test_an_edit_of_the_seed_programs_evaluate_is_on_the_path_to_the_nll_file(old, new):
    child = edit(BASELINE, old, new)
    reason = scoring_change(BASELINE, child)
    assert reason.startswith(
        "edits `evaluate`, on the path to val_nll.f32, check_rows.f32 (written by `run_eval`): lines "
    ), reason
    first_new = new.splitlines()[0].strip()
    assert str(line_of(child, first_new)) in reason


def test_the_sliding_window_plan_is_on_the_eval_path_too():
    child = edit(BASELINE, "    if starts[-1] != n - S:\n", "    if starts[-1] != n - S and False:\n")
    assert scoring_change(BASELINE, child).startswith("edits `plan_windows`, on the path to val_nll.f32")


def test_rewriting_a_result_json_field_in_the_seed_programs_main_is_named():
    old = '        summary.setdefault("steps", None)\n'
    child = edit(
        BASELINE, old, old + '        summary["train_seconds"] = 0.5 * (summary["train_seconds"] or 0)\n'
    )
    line = line_of(child, '0.5 * (summary["train_seconds"]')
    assert scoring_change(BASELINE, child) == f"edits `main`, which writes result.json: lines {line}"


def test_clamping_the_nll_in_the_unigram_trainers_evaluate_is_named_with_its_line():
    old = '    write_f32(os.path.join(out_dir(), "val_nll.f32"), nll)\n'
    child = edit(UNIGRAM, old, "    nll = [min(x, 10.0) for x in nll]\n" + old)
    line = line_of(child, "min(x, 10.0)")
    assert scoring_change(UNIGRAM, child) == (
        f"edits `evaluate`, which writes val_nll.f32, check_rows.f32, result.json: lines {line}"
    )


def test_a_changed_result_json_field_or_a_deleted_line_of_the_unigram_trainer_is_named():
    child = edit(UNIGRAM, "val_loss / math.log(2) / 4.0", "val_loss / math.log(2) / 5.0")
    assert scoring_change(UNIGRAM, child).startswith("edits `evaluate`, which writes")
    deleted = edit(UNIGRAM, '        "steps": (train_report or {}).get("steps"),\n', "")
    line = line_of(UNIGRAM, '"steps": (train_report or {}).get("steps")')
    assert scoring_change(UNIGRAM, deleted).endswith(f": parent lines {line}")
    helper = edit(
        UNIGRAM,
        "    return [math.log((c + smoothing) / total) for c in counts]\n",
        "    return [math.log((c + smoothing) / total) - 0.01 for c in counts]\n",
    )
    assert scoring_change(UNIGRAM, helper).startswith(
        "edits `log_probs`, on the path to val_nll.f32, check_rows.f32 (written by `evaluate`)"
    )


def test_a_model_change_or_a_comment_on_the_eval_path_is_not_a_scoring_change():
    leaky = edit(BASELINE, RELU2, LEAKY)
    assert scoring_change(BASELINE, leaky) == ""
    schedule = edit(
        BASELINE,
        "            scale *= remaining_ms / warmdown_ms\n",
        "            scale *= (remaining_ms / warmdown_ms) ** 2\n",
    )
    assert scoring_change(BASELINE, schedule) == ""
    commented = edit(
        leaky, "    all_reduce_(rt, nll)\n", "    # sum the ranks' shares\n    all_reduce_(rt, nll)\n"
    )
    assert scoring_change(BASELINE, commented) == ""
    unused = edit(UNIGRAM, "    peak = max(logits)\n", "    peak = max(logits) + 0.0\n")
    assert scoring_change(UNIGRAM, unused) == ""  # `normalized` is not on any write's path
