"""Wrappers are decoded and stubs followed without running anything; bad ones are refused clearly."""

from __future__ import annotations

import base64
import bz2
import lzma
import zlib
from pathlib import Path

import pytest

from importer import Codec, Encoding, ParseMethod, RecordImportError, Wrapping, unwrap_file, unwrap_text
from tests.importer.programs import OFFICIAL, PEP701, lzma_b85_wrapper, zlib_b64_wrapper

# Anything that runs this would leave a mark; decoding must not.
BOOBYTRAP = 'import pathlib\npathlib.Path("RAN").write_text("the wrapper was executed")\n'


def test_plain_source_comes_back_unchanged():
    unwrapped = unwrap_text(OFFICIAL)
    assert unwrapped.wrapping is Wrapping.PLAIN
    assert unwrapped.source == OFFICIAL and unwrapped.layers == ()


def test_raw_lzma_base85_wrapper_decodes_with_its_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    unwrapped = unwrap_text(lzma_b85_wrapper(BOOBYTRAP + OFFICIAL))
    assert unwrapped.source == BOOBYTRAP + OFFICIAL
    assert unwrapped.wrapping is Wrapping.SELF_EXTRACTING
    (layer,) = unwrapped.layers
    assert (layer.codec, layer.encoding) == (Codec.LZMA, Encoding.BASE85)
    assert layer.lzma_format == lzma.FORMAT_RAW and layer.lzma_filters == ({"id": lzma.FILTER_LZMA2},)
    assert not (tmp_path / "RAN").exists()


def test_nested_wrappers_are_peeled_outermost_first():
    unwrapped = unwrap_text(zlib_b64_wrapper(lzma_b85_wrapper(OFFICIAL)))
    assert unwrapped.source == OFFICIAL
    assert [(layer.codec, layer.encoding) for layer in unwrapped.layers] == [
        (Codec.ZLIB, Encoding.BASE64),
        (Codec.LZMA, Encoding.BASE85),
    ]


def test_two_codecs_in_one_expression_are_listed_outermost_first():
    payload = base64.b85encode(lzma.compress(zlib.compress(OFFICIAL.encode()))).decode()
    text = (
        f'import lzma, zlib, base64\nexec(zlib.decompress(lzma.decompress(base64.b85decode("{payload}"))))\n'
    )
    unwrapped = unwrap_text(text)
    assert unwrapped.source == OFFICIAL
    assert [(layer.codec, layer.encoding) for layer in unwrapped.layers] == [
        (Codec.ZLIB, Encoding.NONE),
        (Codec.LZMA, Encoding.BASE85),
    ]


def test_wrapper_forms_other_records_could_use():
    payload = base64.a85encode(bz2.compress(OFFICIAL.encode())).decode()
    text = f'from base64 import a85decode\nimport bz2\nP = {payload!r}\nexec(compile(bz2.decompress(a85decode(P)), "t", "exec"))\n'
    unwrapped = unwrap_text(text)
    assert unwrapped.source == OFFICIAL
    assert [(layer.codec, layer.encoding) for layer in unwrapped.layers] == [(Codec.BZ2, Encoding.ASCII85)]
    only_encoded = (
        f'import base64\nexec(base64.b64decode("{base64.b64encode(OFFICIAL.encode()).decode()}"))\n'
    )
    assert [(la.codec, la.encoding) for la in unwrap_text(only_encoded).layers] == [
        (Codec.NONE, Encoding.BASE64)
    ]


def test_wrapper_that_does_not_parse_here_is_read_by_regex():
    # The wrapper itself carries a 3.12-only line, so ast cannot read it: the exec line still decodes.
    text = lzma_b85_wrapper(OFFICIAL) + 'print(f"{"done"}")\n'
    unwrapped = unwrap_text(text)
    assert unwrapped.method is ParseMethod.TEXT
    assert unwrapped.source == OFFICIAL
    assert unwrapped.layers[0].lzma_format == lzma.FORMAT_RAW


def test_a_program_that_does_not_parse_and_wraps_nothing_is_plain():
    unwrapped = unwrap_text(PEP701)
    assert (unwrapped.wrapping, unwrapped.source) == (Wrapping.PLAIN, PEP701)


def test_corrupt_payload_is_a_clear_error():
    good = lzma_b85_wrapper(OFFICIAL)
    start = good.index('b85decode("') + len('b85decode("')
    truncated = good[:start] + good[start + 40 :]  # bytes lost from the front of the stream
    with pytest.raises(RecordImportError, match="payload does not decode") as caught:
        unwrap_text(truncated, filename="train_gpt.py")
    assert "train_gpt.py" in str(caught.value) and caught.value.hint


def test_exec_of_something_unreadable_is_refused_not_run():
    with pytest.raises(RecordImportError, match="cannot be read without running it"):
        unwrap_text("import lzma\nexec(lzma.decompress(fetch_payload()))\n")


def test_payload_that_is_not_text_is_refused():
    binary = zlib.compress(b"\xff\xfe not a program")
    with pytest.raises(RecordImportError, match="not UTF-8"):
        unwrap_text(f"import zlib\nexec(zlib.decompress({binary!r}))\n")


@pytest.mark.parametrize(
    "stub",
    [
        'exec(open("train_gpt_human.py").read())\n',
        'exec(open(__file__.replace("train_gpt.py", "train_gpt_human.py")).read())\n',
        'import os\nexec(open(os.path.join(os.path.dirname(__file__), "train_gpt_human.py")).read())\n',
        'from pathlib import Path\nexec(Path(__file__).with_name("train_gpt_human.py").read_text())\n',
        'import runpy\nrunpy.run_path("train_gpt_human.py", run_name="__main__")\n',
    ],
)
def test_exec_stub_resolves_to_its_sibling(write_record, stub):
    folder = write_record(files={"train_gpt.py": stub, "train_gpt_human.py": OFFICIAL})
    unwrapped = unwrap_file(folder / "train_gpt.py")
    assert unwrapped.wrapping is Wrapping.EXEC_STUB
    assert unwrapped.stub_target == Path("train_gpt_human.py")
    assert unwrapped.source == OFFICIAL and unwrapped.source_file == folder / "train_gpt_human.py"


def test_stub_to_a_wrapped_sibling_keeps_both(write_record):
    folder = write_record(
        files={"train_gpt.py": 'exec(open("inner.py").read())\n', "inner.py": lzma_b85_wrapper(OFFICIAL)}
    )
    unwrapped = unwrap_file(folder / "train_gpt.py")
    assert (unwrapped.wrapping, unwrapped.stub_target, unwrapped.source) == (
        Wrapping.EXEC_STUB,
        Path("inner.py"),
        OFFICIAL,
    )
    assert unwrapped.layers[0].codec is Codec.LZMA


def test_stub_pointing_outside_its_folder_is_refused(write_record, tmp_path):
    (tmp_path / "elsewhere.py").write_text(OFFICIAL)
    folder = write_record(files={"train_gpt.py": 'exec(open("../elsewhere.py").read())\n'})
    with pytest.raises(RecordImportError, match="outside the record folder"):
        unwrap_file(folder / "train_gpt.py")


def test_stub_pointing_at_a_missing_file_is_refused(write_record):
    folder = write_record(files={"train_gpt.py": 'exec(open("gone.py").read())\n'})
    with pytest.raises(RecordImportError, match="gone.py, which does not exist"):
        unwrap_file(folder / "train_gpt.py")


def test_stub_whose_target_needs_running_to_know_is_refused(write_record):
    folder = write_record(files={"train_gpt.py": 'import os\nexec(open(os.environ["PROGRAM"]).read())\n'})
    with pytest.raises(RecordImportError, match="cannot be worked out without running it"):
        unwrap_file(folder / "train_gpt.py")


def test_stub_loop_is_refused(write_record):
    folder = write_record(files={"train_gpt.py": "exec(open(__file__).read())\n"})
    with pytest.raises(RecordImportError, match="stubs in a chain"):
        unwrap_file(folder / "train_gpt.py")


def test_stub_text_without_its_folder_is_refused():
    with pytest.raises(RecordImportError, match="exec stub"):
        unwrap_text('exec(open("train_gpt_human.py").read())\n')
