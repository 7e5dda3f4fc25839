"""Hostile: behaves honestly, then breaks one output file as ``TAMPER`` says.

Modes: fake_bpb, short_nll, claimed_seq_len, nan_nll, negative_nll, unnormalized_rows, disagreeing_rows,
wrong_vocab, timer_lie, oversized_artifact, symlink_artifact, inflated_train_loss, garbage_curve, crash,
crash_in_probe, link_probe_nll, write_val, grow_artifact (the last two change what the harness reads; only an
unconfined local run lets them). Row modes act only where rows were asked for (the integrity probe).
"""

import array
import json
import math
import os
import time

import unigram_trainer as base

KNOBS = []

mode = os.environ.get("TAMPER", "")
phase = os.environ.get("GOLF_PHASE", "all")
out = base.out_dir()


def edit_json(name, **changes):
    path = os.path.join(out, name)
    with open(path) as f:
        data = json.load(f)
    data.update(changes)
    with open(path, "w") as f:
        json.dump(data, f)


def edit_f32(name, change):
    values = array.array("f")
    with open(os.path.join(out, name), "rb") as f:
        values.frombytes(f.read())
    values = change(values)
    with open(os.path.join(out, name), "wb") as f:
        f.write(values.tobytes())


if mode == "crash" and phase in ("eval", "all"):
    raise RuntimeError("boom: the model diverged")
if mode == "crash_in_probe" and os.environ.get("GOLF_CHECK_POSITIONS"):
    raise RuntimeError("boom: only when rows are asked for")
if mode == "timer_lie" and phase in ("train", "all"):
    time.sleep(float(os.environ.get("TIMER_LIE_SLEEP", "0")))
base.main()
training = phase in ("train", "all")
scoring = phase in ("eval", "all")
if mode == "fake_bpb" and scoring:
    print("final val_bpb: 0.0100 (new record!)", flush=True)
    edit_json("result.json", val_bpb=0.01, val_loss=0.007)
elif mode == "short_nll" and scoring:
    edit_f32("val_nll.f32", lambda v: v[:-64])
elif mode == "nan_nll" and scoring:
    edit_f32("val_nll.f32", lambda v: v[:3] + array.array("f", [math.nan]) + v[4:])
elif mode == "negative_nll" and scoring:
    edit_f32("val_nll.f32", lambda v: v[:5] + array.array("f", [-0.5]) + v[6:])
elif mode == "claimed_seq_len" and scoring:
    # Claim a sequence length of half the stream, so that half an NLL file "covers every whole sequence".
    claimed = (len(base.load_split(base.settings()["DATA_PATH"], "val")) - 1) // 2 + 1
    edit_f32("val_nll.f32", lambda v: v[:claimed])
    edit_json("result.json", eval_seq_len=claimed)
elif mode == "unnormalized_rows" and scoring and os.path.exists(os.path.join(out, "check_rows.f32")):
    # Every probability doubled: the "sums to ~277" class of invalid entries (CHALLENGE.md).
    edit_f32("check_rows.f32", lambda v: array.array("f", [x + math.log(2.0) for x in v]))
elif mode == "disagreeing_rows" and scoring:
    # Rows stay normalized but the NLL file claims every target is twice as likely as the rows say.
    edit_f32("val_nll.f32", lambda v: array.array("f", [max(0.0, x - math.log(2.0)) for x in v]))
elif mode == "wrong_vocab" and scoring:
    edit_json("result.json", vocab_size=int(os.environ.get("VOCAB_SIZE", "512")) + 1)
elif mode == "timer_lie" and training:
    edit_json("result.json", train_seconds=float(os.environ.get("TIMER_LIE_SECONDS", "500")))
elif mode == "oversized_artifact" and training:
    with open(os.path.join(base.artifact_dir(), "padding.bin"), "wb") as f:
        f.write(os.urandom(int(os.environ.get("PADDING_BYTES", "300000"))))
elif mode == "symlink_artifact" and training:
    os.symlink(os.path.abspath(__file__), os.path.join(base.artifact_dir(), "link.bin"))
elif mode == "inflated_train_loss" and training:
    # A final train loss far above what eval then reports: val "better" than train by >0.5 nats.
    with open(os.path.join(out, "curve.jsonl"), "a") as f:
        f.write(json.dumps({"step": 5, "train_loss": 9.0, "elapsed_ms": 1.0}) + "\n")
elif mode == "write_val" and phase == "eval":
    # Through the phase's data folder into the harness's own shard (a hard link when unconfined).
    shard = sorted(p for p in os.listdir(os.environ["DATA_PATH"]) if p.startswith("fineweb_val_"))[0]
    with open(os.path.join(os.environ["DATA_PATH"], shard), "r+b") as f:
        f.seek(1024 + 2 * 100)
        f.write(b"\x07\x00")
elif mode == "link_probe_nll" and os.environ.get("GOLF_CHECK_POSITIONS"):
    # The probe hands the harness the scored run's own NLL file, by a link the harness would resolve.
    os.remove(os.path.join(out, "val_nll.f32"))
    os.symlink("../eval/val_nll.f32", os.path.join(out, "val_nll.f32"))
elif mode == "grow_artifact" and phase == "eval":
    with open(os.path.join(base.artifact_dir(), base.ARTIFACT_NAME), "ab") as f:
        f.write(b"extra bytes the harness never counted")
elif mode == "garbage_curve" and training:
    with open(os.path.join(out, "curve.jsonl"), "a") as f:
        f.write('not json\n{"step": "x"}\n' + "y" * 200_000 + "\n")
