"""Fixtures for the importer suite: the real records' folder and a writer for record-like folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

RECORDS = Path("/work/shared/records")
RECORD_NAMES = [
    "2026-03-17_NaiveBaseline",
    "2026-03-19_SlidingWindowEval",
    "2026-03-22_11L_EMA_GPTQ-lite_warmdown3500_QAT015_1.1233",
    "2026-03-23_LeakyReLU_LegalTTT_ParallelMuon",
    "2026-04-05_SP8192_GPTQ-Embeddings_SDClip_Loop45x2",
    "2026-04-06_SP8192_HessianSDClip_ProgressiveRecurrence",
    "2026-04-19_SP8192_CaseOps_GatedAttn_QuantGate_Loop45_PhasedTTT",
]


@pytest.fixture
def write_record(tmp_path: Path) -> Callable[..., Path]:
    """``write_record(name, {"train_gpt.py": text, ...})`` -> a record folder under tmp_path."""

    def write(name: str = "record", files: dict[str, str] | None = None) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        for relative, text in (files or {}).items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(text, encoding="utf-8")
        return folder

    return write


def record_folder(name: str) -> Path:
    """A real record's folder, or a skip saying it is not on this machine."""
    folder = RECORDS / name
    if not folder.is_dir():
        pytest.skip(f"the real record {name} is not at {RECORDS} (test data from openai/parameter-golf)")
    return folder
