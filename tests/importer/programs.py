"""Record-like programs for the importer tests, written here (the real records are only read, never copied).

Each is the smallest text that has the shape under test: an official-style ``class Hyperparameters``,
a program that scores against a per-token byte sidecar, one that needs Python 3.12, wrappers built
from any of them.
"""

from __future__ import annotations

import base64
import lzma
import zlib

OFFICIAL = '''\
"""A toy trainer in the challenge's style."""
import os
import subprocess
import uuid

import torch
import torch.distributed as dist
try:
    import zstandard
except ImportError:
    zstandard = None
from flash_attn_interface import flash_attn_func


class Hyperparameters:
    data_path = os.environ.get("DATA_PATH", "./data/datasets/fineweb10B_sp1024")
    val_files = os.path.join(data_path, "fineweb_val_*.bin")
    tokenizer_path = os.environ.get("TOKENIZER_PATH", "./data/tokenizers/fineweb_1024_bpe.model")
    run_id = os.environ.get("RUN_ID", str(uuid.uuid4()))
    seed = int(os.environ.get("SEED", 1337))
    vocab_size = int(os.environ.get("VOCAB_SIZE", 1024))
    num_layers = int(os.environ.get("NUM_LAYERS", 9))
    train_batch_tokens = int(os.environ.get("TRAIN_BATCH_TOKENS", 2048 * 32 * 8))
    matrix_lr = float(os.environ.get("MATRIX_LR", "0.04"))
    warmup_frac = float(os.environ.get("WARMUP_FRAC", 0))
    tie_embeddings = bool(int(os.environ.get("TIE_EMBEDDINGS", "1")))
    big_steps = int(float(os.environ.get("BIG_STEPS", "1e3")))
    ve_layers = os.environ.get("VE_LAYERS", "9,10")
    logfile = os.environ.get("LOGFILE", f"logs/{run_id}.txt")
    eval_seq_len = int(os.environ.get("EVAL_SEQ_LEN", vocab_size))
    rank = int(os.environ.get("RANK", "0"))


def main():
    args = Hyperparameters()
    if not torch.cuda.is_available():
        raise RuntimeError("CUDA is required")
    dist.init_process_group(backend="nccl")
    subprocess.run(["nvidia-smi"], check=False)
    model = torch.compile(torch.nn.Linear(2, 2), fullgraph=True)
    print(f"Hyperparameters:\\n" + "\\n".join(f"  {k}: {v}" for k, v in vars(Hyperparameters).items()))


if __name__ == "__main__":
    main()
'''

# Knobs the official program declares with a constant default, as (name, type, default).
OFFICIAL_KNOBS = [
    ("DATA_PATH", "str", "./data/datasets/fineweb10B_sp1024"),
    ("TOKENIZER_PATH", "str", "./data/tokenizers/fineweb_1024_bpe.model"),
    ("SEED", "int", 1337),
    ("VOCAB_SIZE", "int", 1024),
    ("NUM_LAYERS", "int", 9),
    ("TRAIN_BATCH_TOKENS", "int", 524288),
    ("MATRIX_LR", "float", 0.04),
    ("WARMUP_FRAC", "float", 0.0),
    ("TIE_EMBEDDINGS", "bool", True),
    ("BIG_STEPS", "int", 1000),
    ("VE_LAYERS", "str", "9,10"),
]

# A log that prints its hyperparameters the way the 2026-04 records do.
OFFICIAL_LOG = """\
W0101 torch/distributed/run.py: setting OMP_NUM_THREADS
Hyperparameters:
  data_path: ./data/datasets/fineweb10B_sp1024
  matrix_lr: 0.03
  num_layers: 9
  rank: 0
  run_id: demo
  seed: 42
  tie_embeddings: True
  val_files: ./data/datasets/fineweb10B_sp1024/fineweb_val_*.bin
train_shards: 80
step:100/200 val_loss:3.0000 val_bpb:1.9000
final_roundtrip_exact val_loss:2.50000000 val_bpb:1.48000000
"""

README = """\
# A toy record

## Run

```bash
export NCCL_IB_DISABLE=1
NUM_LAYERS=9 MATRIX_LR=0.03 \\
  TIE_EMBEDDINGS=1 SEED=42 \\
  torchrun --standalone --nproc_per_node=8 train_gpt.py
```

Data (not a run command):

```bash
MATCHED_FINEWEB_REPO_ID=someone/data python3 data/cached_challenge_fineweb.py --variant sp1024
```
"""

SUBMISSION = '{"name": "Toy record", "val_bpb": 1.4812, "val_loss": 2.5012, "seeds": [42]}'

SIDECAR = """\
import os
import numpy as np

class Hyperparameters:
    data_path = os.environ.get("DATA_PATH", "./data/caseops")
    val_files = os.path.join(data_path, "fineweb_val_*.bin")
    val_bytes_files = os.path.join(data_path, "fineweb_val_bytes_*.bin")
    caseops_enabled = bool(int(os.environ.get("CASEOPS_ENABLED", "1")))
"""

# Needs Python 3.12: the f-string nests its own quote (PEP 701), which 3.11's parser rejects.
PEP701 = """\
import os

class Hyperparameters:
    num_layers = int(os.environ.get("NUM_LAYERS", 11))
    matrix_lr = float(os.environ.get("MATRIX_LR", 0.02))
    label = f"{", ".join(["a", "b"])}"
    model_dim = int(os.environ.get("MODEL_DIM", 512))
    tag = f"{os.environ.get("TAG", "x")}"

def main():
    print(f"{Hyperparameters.num_layers:d} {"layers"}")
"""

MODULE_LEVEL = """\
import os
NUM_LAYERS = int(os.environ.get("NUM_LAYERS", 4))
LR = float(os.getenv("LR", "0.1"))
if os.environ.get("FAST", "0") == "1":
    STEPS = int(os.environ["STEPS"])

def train():
    hidden = int(os.environ.get("HIDDEN_INSIDE_FUNCTION", 3))
"""


def lzma_b85_wrapper(source: str) -> str:
    """A self-extracting program the way the 2026-04 records build one (raw LZMA2, base85)."""
    payload = base64.b85encode(
        lzma.compress(source.encode(), format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}])
    ).decode()
    return (
        "import lzma as L,base64 as B\n"
        f'exec(L.decompress(B.b85decode("{payload}"),format=L.FORMAT_RAW,filters=[{{"id":L.FILTER_LZMA2}}]))\n'
    )


def zlib_b64_wrapper(source: str) -> str:
    payload = base64.b64encode(zlib.compress(source.encode())).decode()
    return f'import zlib, base64\nexec(zlib.decompress(base64.b64decode("{payload}")).decode())\n'
