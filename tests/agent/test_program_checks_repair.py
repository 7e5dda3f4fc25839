"""Empty changes and a knob table changed after its literal, end to end: the real openai client against
the scripted server, a repair turn carrying the exact message, then an accepted reply; and an edit of
what the program writes to the scored files, accepted with ``scoring_change`` set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agent.proposal import Proposal, ProposalContext
from tests.agent.conftest import PARENT, check_program
from tests.agent.fake_llm import completion
from tests.agent.replies import CLEAN_REPLY, CLEAN_RESULT, GOOD_FIX, GOOD_FIX_RESULT, reply_with

UNIGRAM = (Path(__file__).resolve().parents[2] / "tests" / "programs" / "unigram_trainer.py").read_text()
TABLE_END = '    Knob("MATRIX_LR", float, 0.04, low=0.005, high=0.2, log=True),\n]\n'
WIDTH = '    Knob("WIDTH_MULT", int, 3, low=1, high=4),\n'


def repair_turns(server) -> list[str]:
    """The repair messages the agent sent, in order."""
    return [request.messages[-1]["content"] for request in server.requests[1:]]


def checked_sources() -> tuple[list[str], Callable[[str], tuple[str, ...]]]:
    """A check_program that records each program it was asked about (the controller's smoke run)."""
    seen: list[str] = []

    def check(source: str) -> tuple[str, ...]:
        seen.append(source)
        return check_program(source)

    return seen, check


def test_a_docstring_only_change_is_refused_before_any_smoke_run_then_a_real_one_accepted(
    llm_server, make_proposer, context
):
    docstring = reply_with('"""A tiny stand-in for train_gpt.py."""\n', '"""A small model of the seed."""\n')
    llm_server.add(completion(docstring), completion(GOOD_FIX))
    seen, check = checked_sources()
    result = make_proposer().propose(context, check)

    assert isinstance(result, Proposal) and result.turns == 2
    assert result.files == {"train_gpt.py": GOOD_FIX_RESULT} and result.scoring_change == ""
    (repair,) = repair_turns(llm_server)
    assert (
        "After the edits the program is identical to the parent (it differs only in comments, docstrings, "
        "blank lines or spacing). Make a change that alters what the program does." in repair
    )
    assert seen == [PARENT, GOOD_FIX_RESULT]  # the parent's knobs, then the accepted child only


def test_a_new_knob_the_program_never_reads_is_refused_saying_how_it_reads_knobs(
    llm_server, make_proposer, context
):
    declared_only = reply_with(TABLE_END, TABLE_END.replace("]\n", WIDTH + "]\n"))
    llm_server.add(completion(declared_only), completion(CLEAN_REPLY))
    result = make_proposer().propose(context, check_program)

    assert isinstance(result, Proposal) and result.turns == 2
    assert result.files == {"train_gpt.py": CLEAN_RESULT} and result.new_knobs == ("WIDTH_MULT",)
    (repair,) = repair_turns(llm_server)
    assert (
        "After the edits the new knob WIDTH_MULT is declared in KNOBS but the program never reads it, so "
        "the run would repeat the parent and the tuner would search a setting that does nothing. This "
        'program reads each knob from the environment by name (NUM_LAYERS is `os.environ.get("NUM_LAYERS", '
        '...)`): read WIDTH_MULT as `os.environ.get("WIDTH_MULT", ...)` where the setting should take '
        "effect, or drop the knob." in repair
    )


def test_a_unigram_style_program_is_told_to_read_the_knob_from_its_settings_dict(llm_server, make_proposer):
    context = ProposalContext(files={"train_gpt.py": UNIGRAM})
    end = '    Knob("TOKENIZER_PATH", str, "./data/tokenizers/tiny_512_bpe.model"),\n]\n'
    declared_only = reply_with(
        end, end.replace("]\n", '    Knob("TEMPERATURE", float, 1.0, low=0.5, high=2.0),\n]\n')
    )
    llm_server.add(completion(declared_only), completion(declared_only))
    make_proposer(repair_turns=1).propose(context, check_program)
    (repair,) = repair_turns(llm_server)
    assert (
        'This program reads each knob by name from `cfg` (SMOOTHING is `cfg["SMOOTHING"]`): read TEMPERATURE '
        'as `cfg["TEMPERATURE"]` where the setting should take effect, or drop the knob.' in repair
    )


def test_a_knob_appended_to_the_table_is_refused_naming_the_line_then_the_list_entry_accepted(
    llm_server, make_proposer, context
):
    appended = (
        "<hypothesis>Expose a width knob</hypothesis>\n<rationale>r</rationale>\n"
        '<edit path="train_gpt.py">\n'
        f"<<<<<<< SEARCH\n{TABLE_END}=======\n{TABLE_END}"
        'KNOBS.append(Knob("WIDTH_MULT", int, 3, low=1, high=4))\n>>>>>>> REPLACE\n'
        "<<<<<<< SEARCH\n            x = x * 2\n=======\n"
        '            x = x * int(os.environ.get("WIDTH_MULT", 3))\n>>>>>>> REPLACE\n</edit>\n'
    )
    llm_server.add(completion(appended), completion(CLEAN_REPLY))
    result = make_proposer().propose(context, check_program)

    assert isinstance(result, Proposal) and result.turns == 2 and result.new_knobs == ("WIDTH_MULT",)
    line = PARENT[: PARENT.index(TABLE_END) + len(TABLE_END)].count("\n") + 1
    (repair,) = repair_turns(llm_server)
    assert (
        f'After the edits train_gpt.py changes KNOBS after its table (line {line}: KNOBS.append(Knob("WIDTH_MULT", '
        "int, 3, low=1, high=4))). The knob table is read without running the program, as the one literal "
        "list `KNOBS = [...]`, so a knob added any other way is never tuned and never listed. Keep KNOBS one "
        "literal list: put each new Knob(NAME, type, default, ...) inside that list and do not change KNOBS "
        "anywhere else." in repair
    )


def test_clamping_the_nll_is_accepted_and_named_in_scoring_change(llm_server, make_proposer):
    context = ProposalContext(files={"train_gpt.py": UNIGRAM})
    write = '    write_f32(os.path.join(out_dir(), "val_nll.f32"), nll)\n'
    clamp = reply_with(write, "    nll = [min(x, 10.0) for x in nll]\n" + write, hypothesis="Cap the loss")
    llm_server.add(completion(clamp))
    result = make_proposer().propose(context, check_program)

    assert isinstance(result, Proposal) and result.turns == 1
    child = result.files["train_gpt.py"]
    line = child.splitlines().index("    nll = [min(x, 10.0) for x in nll]") + 1
    assert result.scoring_change == (
        f"edits `evaluate`, which writes val_nll.f32, check_rows.f32, result.json: lines {line}"
    )
