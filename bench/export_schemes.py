"""Benchmark: artifact bytes and BPB cost of each export scheme, on the same trained weights.

    python bench/export_schemes.py --tiny
        trains the tiny CPU model on tests/data/corpus first (about a minute), then compares schemes
    python bench/export_schemes.py --raw OUT/raw_model.pt --data DATA_PATH --tokenizer MODEL [KNOB=VALUE ...]
        weights from a run with SAVE_RAW_MODEL=1; KNOB=VALUE pairs give that run's model shape

For every scheme (bits for matrices / embedding, clip search on or off) it packs the weights, compresses
them with every installed compressor, reloads the dequantized weights and scores the validation tokens,
printing bytes per compressor and the BPB change against the unquantized weights.
This prints numbers; it is not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from baseline import train_gpt as tg  # noqa: E402

SCHEMES = [  # (matrix bits, embed bits, clip search)
    (16, 16, False),
    (8, 8, False),
    (8, 8, True),
    (7, 8, True),
    (6, 8, False),
    (6, 8, True),
    (6, 6, False),
    (6, 6, True),
    (5, 6, True),
    (4, 6, False),
    (4, 6, True),
]
TINY = {
    "VOCAB_SIZE": "512",
    "NUM_LAYERS": "4",
    "MODEL_DIM": "128",
    "NUM_HEADS": "4",
    "NUM_KV_HEADS": "2",
    "TRAIN_SEQ_LEN": "128",
    "EVAL_SEQ_LEN": "128",
    "TRAIN_BATCH_TOKENS": "4096",
    "ITERATIONS": "300",
    "MAX_WALLCLOCK_SECONDS": "0",
    "WARMDOWN_ITERS": "100",
    "QUANT_KEEP_FLOAT_NUMEL": "4096",
}


def train_tiny(workdir: Path) -> dict[str, str]:
    """Build the tiny dataset and train on it with SAVE_RAW_MODEL=1; returns the knob env used."""
    from datatools.prepare import build_dataset, shuffled_documents

    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "tests/data/corpus").glob("*.txt"))]
    built = build_dataset(
        shuffled_documents(texts), workdir / "data", vocab_size=512, val_docs=8, name="tiny"
    )
    env = {**TINY, "DATA_PATH": str(built.dataset_dir), "TOKENIZER_PATH": str(built.tokenizer_path)}
    run_env = {**os.environ, **env, "GOLF_OUT": str(workdir / "run"), "SAVE_RAW_MODEL": "1"}
    subprocess.run([sys.executable, str(Path(tg.__file__))], env=run_env, check=True)
    env["RAW"] = str(workdir / "run" / "raw_model.pt")
    return env


def compare(env: dict[str, str], raw_path: Path) -> list[dict]:
    rt = tg.Runtime(0, 1, 0, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    cfg = tg.read_settings(env)
    state = torch.load(raw_path, map_location="cpu", weights_only=True)
    val, tables = tg.load_eval_inputs(cfg, "bench")
    model = tg.build_model(cfg, rt.device)
    model.load_state_dict(state)
    reference = tg.evaluate(model, val, cfg, rt, tables).val_bpb
    print(f"unquantized weights: val_bpb {reference:.5f} over {val.size:,} tokens")
    compressors = list(tg._compressors().items())
    header = f"{'matrix':>6} {'embed':>5} {'clip':>5} {'raw':>10} " + " ".join(
        f"{n:>9}" for n, _ in compressors
    )
    print(header + f" {'val_bpb':>9} {'d_bpb':>8}")
    rows = []
    for matrix_bits, embed_bits, clip in SCHEMES:
        scheme = dict(QUANT_BITS_MATRIX=str(matrix_bits), QUANT_BITS_EMBED=str(embed_bits))
        scheme_cfg = tg.read_settings({**env, **scheme, "QUANT_CLIP_SEARCH": "1" if clip else "0"})
        raw = tg.pack_state(state, scheme_cfg)
        sizes = {name: len(fns[1](raw)) for name, fns in compressors}
        model.load_state_dict(tg.unpack_state(raw))
        bpb = tg.evaluate(model, val, cfg, rt, tables).val_bpb
        rows.append(dict(matrix_bits=matrix_bits, embed_bits=embed_bits, clip_search=clip))
        rows[-1].update(raw_bytes=len(raw), compressed_bytes=sizes, val_bpb=bpb)
        print(
            f"{matrix_bits:>6} {embed_bits:>5} {clip!s:>5} {len(raw):>10,} "
            + " ".join(f"{s:>9,}" for s in sizes.values())
            + f" {bpb:>9.5f} {bpb - reference:>+8.5f}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="train the tiny CPU model first")
    parser.add_argument("--raw", type=Path, help="raw_model.pt from a run with SAVE_RAW_MODEL=1")
    parser.add_argument("--data", help="DATA_PATH holding fineweb_val_*.bin")
    parser.add_argument("--tokenizer", help="TOKENIZER_PATH")
    parser.add_argument("--out", type=Path, help="also write the numbers as JSON here")
    parser.add_argument("knobs", nargs="*", help="KNOB=VALUE settings of the run that made --raw")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            env = train_tiny(Path(tmp))
            raw = Path(env.pop("RAW"))
        else:
            if not (args.raw and args.data and args.tokenizer):
                parser.error("give --tiny, or --raw, --data and --tokenizer")
            env = dict(kv.split("=", 1) for kv in args.knobs)
            env.update(DATA_PATH=args.data, TOKENIZER_PATH=args.tokenizer)
            raw = args.raw
        rows = compare(env, raw)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
