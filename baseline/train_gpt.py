"""autogolf seed program: a complete Parameter Golf entry in one file.

Trains a small GPT on the challenge's FineWeb shards under a wall-clock cap, exports it as a per-row
quantized and compressed artifact, reloads that artifact and scores the whole validation set in bits per
byte. It honours autogolf's run contract (docs/contract.md):

    GOLF_PHASE=train|eval|all   GOLF_OUT=<dir>   GOLF_ARTIFACT_DIR=<dir>   GOLF_CHECK_POSITIONS=<file>

Run as `python train_gpt.py` (CPU or one GPU) or `torchrun --standalone --nproc_per_node=N train_gpt.py`
(N dividing 8). Every setting is a knob in KNOBS below, read from the environment variable of that name.

Model and optimizer follow the challenge's reference baseline (openai/parameter-golf), itself grown from
modded-nanogpt (Keller Jordan et al.): GQA attention with RoPE and QK-norm, relu^2 MLP, U-Net skips,
tied embeddings, logit softcap, Muon for matrices and Adam for the rest.
"""

from __future__ import annotations

import copy
import json
import lzma
import math
import os
import struct
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import sentencepiece as spm
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

try:  # optional compressors: a missing one is skipped by COMPRESSOR=auto
    import zstandard
except ImportError:
    zstandard = None
try:
    import brotli
except ImportError:
    brotli = None

# The CPU path never imports triton, except under Triton's interpreter (TRITON_INTERPRET=1), which runs the
# fused kernels on CPU tensors so that machines without a GPU can still check them against eager.
TRITON_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
triton = None
if torch.cuda.is_available() or TRITON_INTERPRET:
    try:
        import triton
        import triton.language as tl
    except ImportError:
        triton = None

# -----------------------------------------------------------------------------
# Settings: the knob table
# -----------------------------------------------------------------------------


class SettingError(RuntimeError):
    """A setting, input file or data folder is wrong; the message names it and says the fix."""


class Knob:
    """One setting. KNOBS holds literals only, so autogolf reads the table without importing this file
    (grammar: sandbox/knobs.py); here each knob reads its environment variable."""

    def __init__(self, name, type, default, low=None, high=None, log=False, step=None, choices=None, help=""):
        self.name, self.type, self.default = name, type, default
        self.low, self.high, self.log, self.step = low, high, log, step
        self.choices, self.help = choices, help

    def read(self, env) -> object:
        text = env.get(self.name, "").strip()
        if not text:
            return self.default
        try:
            if self.type is bool:
                words = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False}
                words.update({"no": False, "off": False})
                value = words[text.lower()]
            elif self.type is int:
                value = int(float(text)) if "e" in text.lower() else int(text)
            else:
                value = self.type(text)
        except (KeyError, ValueError):
            raise SettingError(f"{self.name}={text!r} is not a valid {self.type.__name__}") from None
        # choices bound closed sets (COMPRESSOR); numeric choices only shape the search space
        if self.type is str and self.choices is not None and value not in self.choices:
            raise SettingError(f"{self.name}={text!r} is not one of {self.choices}")
        return value


KNOBS = [
    # data and run (fixed settings: no range)
    Knob("DATA_PATH", str, "./data/datasets/fineweb10B_sp1024", help="folder of fineweb_{train,val}_*.bin"),
    Knob("TOKENIZER_PATH", str, "./data/tokenizers/fineweb_1024_bpe.model", help="SentencePiece model"),
    Knob("VOCAB_SIZE", int, 1024, help="model vocabulary; must cover every token id in the shards"),
    Knob("SEED", int, 1337),
    Knob("ITERATIONS", int, 20000, help="step cap; training stops at this or the wall-clock cap"),
    Knob("MAX_WALLCLOCK_SECONDS", float, 600.0, help="training-time cap; 0 = none (schedule on ITERATIONS)"),
    Knob("TRAIN_BATCH_TOKENS", int, 524288, help="tokens per optimizer step, all ranks together"),
    Knob("TRAIN_SEQ_LEN", int, 1024, choices=(512, 1024, 2048)),
    Knob("GRAD_ACCUM_STEPS", int, 0, help="micro-batches per step; 0 = 8 // world size on GPU, 1 on CPU"),
    Knob("WARMUP_STEPS", int, 20, help="torch.compile warm-up steps before the timer; weights restored"),
    Knob("TRAIN_LOG_EVERY", int, 200),
    Knob("VAL_LOSS_EVERY", int, 0, help="periodic val loss (GOLF_PHASE=all only; timer paused); 0 = off"),
    Knob("VAL_BATCH_SIZE", int, 524288, help="validation tokens per forward, all ranks together"),
    Knob("COMPILE", bool, True, help="torch.compile on CUDA; CPU always runs eager"),
    Knob("FUSED_CE", bool, True, help="Triton softcapped cross-entropy on CUDA when triton is installed"),
    Knob("SAVE_RAW_MODEL", bool, False, help="also write fp32 weights to $GOLF_OUT/raw_model.pt (benches)"),
    # model
    Knob("NUM_LAYERS", int, 9, low=4, high=16),
    Knob("MODEL_DIM", int, 512, low=256, high=768, step=64),
    Knob("NUM_HEADS", int, 8, choices=(4, 8)),
    Knob("NUM_KV_HEADS", int, 4, choices=(1, 2, 4)),
    Knob("MLP_MULT", int, 2, low=1, high=4),
    Knob("LOGIT_SOFTCAP", float, 30.0, low=10.0, high=40.0),
    Knob("ROPE_BASE", float, 10000.0, low=1000.0, high=100000.0, log=True),
    Knob("QK_GAIN_INIT", float, 1.5, low=0.5, high=3.0),
    Knob("TIED_EMBED_INIT_STD", float, 0.005, low=0.001, high=0.05, log=True),
    # optimizer and schedule
    Knob("MATRIX_LR", float, 0.04, low=0.005, high=0.2, log=True, help="Muon lr for block matrices"),
    Knob("SCALAR_LR", float, 0.04, low=0.005, high=0.2, log=True, help="Adam lr for gains and mixes"),
    Knob("TIED_EMBED_LR", float, 0.05, low=0.005, high=0.3, log=True, help="Adam lr for the tied embedding"),
    Knob("MUON_MOMENTUM", float, 0.95, low=0.8, high=0.99),
    Knob("MUON_MOMENTUM_WARMUP_START", float, 0.85, low=0.5, high=0.95),
    Knob("MUON_MOMENTUM_WARMUP_STEPS", int, 500, low=0, high=2000),
    Knob("MUON_BACKEND_STEPS", int, 5, low=3, high=7),
    Knob("MUON_WEIGHT_DECAY", float, 0.0, low=0.0, high=0.1),
    Knob("BETA1", float, 0.9, low=0.8, high=0.95),
    Knob("BETA2", float, 0.95, low=0.9, high=0.999),
    Knob("ADAM_EPS", float, 1e-8),
    Knob("GRAD_CLIP_NORM", float, 0.0, low=0.0, high=1.0, help="0 = no clipping"),
    Knob("LR_WARMUP_STEPS", int, 0, low=0, high=500),
    Knob("WARMDOWN_ITERS", int, 1200, low=0, high=5000, help="linear lr decay length, in steps"),
    # export
    Knob("QUANT_BITS_MATRIX", int, 8, choices=(4, 5, 6, 7, 8, 16), help="per-row bits; 16 = fp16"),
    Knob("QUANT_BITS_EMBED", int, 8, choices=(4, 5, 6, 7, 8, 16), help="per-row bits; 16 = fp16"),
    Knob("QUANT_KEEP_FLOAT_NUMEL", int, 65536, help="tensors this small or smaller are stored as fp16"),
    Knob("QUANT_CLIP_SEARCH", bool, False, choices=(False, True), help="per-row MSE-best clip of absmax"),
    Knob("QUANT_SCALE_FLOOR", float, 0.007874, low=0.0, high=0.016, help="least row step; 1/127 as baseline"),
    Knob("COMPRESSOR", str, "auto", choices=("auto", "zlib", "zstd", "lzma", "brotli")),
    # evaluation
    Knob("EVAL_SEQ_LEN", int, 1024, choices=(512, 1024, 2048, 4096)),
    Knob("EVAL_STRIDE", int, 0, choices=(0, 64, 128, 256, 512), help="sliding window step; 0 = no overlap"),
]


def read_settings(env) -> SimpleNamespace:
    """All knobs, as attributes with lower-case names, checked for consistency."""
    cfg = SimpleNamespace(**{k.name.lower(): k.read(env) for k in KNOBS})
    if cfg.model_dim % cfg.num_heads or (cfg.model_dim // cfg.num_heads) % 2:
        raise SettingError(f"MODEL_DIM={cfg.model_dim} must split into NUM_HEADS={cfg.num_heads} even heads")
    if cfg.num_heads % cfg.num_kv_heads:
        raise SettingError(f"NUM_KV_HEADS={cfg.num_kv_heads} must divide NUM_HEADS={cfg.num_heads}")
    if cfg.logit_softcap <= 0:
        raise SettingError(f"LOGIT_SOFTCAP={cfg.logit_softcap} must be positive")
    for name in ("ITERATIONS", "TRAIN_SEQ_LEN", "EVAL_SEQ_LEN", "TRAIN_BATCH_TOKENS", "VAL_BATCH_SIZE"):
        if getattr(cfg, name.lower()) < 1:
            raise SettingError(f"{name} must be at least 1")
    for name in ("QUANT_BITS_MATRIX", "QUANT_BITS_EMBED"):
        if getattr(cfg, name.lower()) not in (2, 3, 4, 5, 6, 7, 8, 16):
            raise SettingError(
                f"{name}={getattr(cfg, name.lower())} must be 2..8 (per-row ints) or 16 (fp16)"
            )
    if cfg.eval_stride < 0:
        raise SettingError(f"EVAL_STRIDE={cfg.eval_stride} must be 0 (no overlap) or positive")
    return cfg


# -----------------------------------------------------------------------------
# Runtime: devices and torchrun
# -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Runtime:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def master(self) -> bool:
        return self.rank == 0

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.is_cuda else nullcontext()

    def sync(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize(self.device)

    def log(self, message: str) -> None:
        if self.master:
            print(message, flush=True)


def init_runtime() -> Runtime:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        device = torch.device("cpu")
    if world > 1:
        if device.type == "cuda" and 8 % world:
            raise SettingError(f"torchrun --nproc_per_node={world}: N must divide 8 (1, 2, 4 or 8)")
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Runtime(rank, world, local_rank, device)


def all_reduce_(rt: Runtime, tensor: Tensor, op=None) -> Tensor:
    if rt.world > 1:
        dist.all_reduce(tensor, op=op or dist.ReduceOp.SUM)
    return tensor


# -----------------------------------------------------------------------------
# Data: challenge shards, train stream, byte accounting
# -----------------------------------------------------------------------------

SHARD_MAGIC, SHARD_VERSION, SHARD_HEADER_INTS = 20240520, 1, 256
SHARD_HEADER_BYTES = SHARD_HEADER_INTS * 4


def read_shard(path: Path) -> np.ndarray:
    """Tokens (uint16) of one shard: 256 int32 header [magic, version, num_tokens, ...], then the tokens."""
    size = os.path.getsize(path)
    header = np.fromfile(path, dtype="<i4", count=SHARD_HEADER_INTS)
    if header.size < SHARD_HEADER_INTS:
        raise SettingError(f"{path}: {size} bytes, shorter than the {SHARD_HEADER_BYTES}-byte shard header")
    if int(header[0]) != SHARD_MAGIC:
        raise SettingError(f"{path}: bad magic {int(header[0])} (expected {SHARD_MAGIC}); not a shard")
    if int(header[1]) != SHARD_VERSION:
        raise SettingError(f"{path}: unsupported shard version {int(header[1])} (expected {SHARD_VERSION})")
    num_tokens = int(header[2])
    if num_tokens < 0 or size != SHARD_HEADER_BYTES + 2 * num_tokens:
        raise SettingError(
            f"{path}: header says {num_tokens} tokens, so the file should be "
            f"{SHARD_HEADER_BYTES + 2 * num_tokens} bytes, but it is {size}"
        )
    return np.fromfile(path, dtype="<u2", count=num_tokens, offset=SHARD_HEADER_BYTES)


def find_shards(data_path: str, split: str, phase: str) -> list[Path]:
    pattern = f"fineweb_{split}_*.bin"
    files = sorted(Path(data_path).glob(pattern))
    if not files:
        raise SettingError(
            f"the {phase} phase needs {pattern} shards, but DATA_PATH={data_path} has none "
            f"(looked for {Path(data_path) / pattern}); point DATA_PATH at the dataset folder"
        )
    return files


def check_token_range(tokens: np.ndarray, vocab_size: int, where: str) -> None:
    if tokens.size and int(tokens.max()) >= vocab_size:
        raise SettingError(
            f"{where}: token id {int(tokens.max())} >= VOCAB_SIZE={vocab_size}; raise VOCAB_SIZE"
        )


class TokenStream:
    """The train shards in order as one endless stream (it wraps after the last shard)."""

    def __init__(self, files: list[Path], vocab_size: int):
        self.files, self.vocab_size = files, vocab_size
        self.file_index, self.pos = -1, 0
        self.tokens = np.empty(0, dtype=np.uint16)
        self.empty_in_a_row = 0

    def _next_shard(self) -> None:
        self.file_index = (self.file_index + 1) % len(self.files)
        path = self.files[self.file_index]
        self.tokens, self.pos = read_shard(path), 0
        check_token_range(self.tokens, self.vocab_size, str(path))
        self.empty_in_a_row = self.empty_in_a_row + 1 if self.tokens.size == 0 else 0
        if self.empty_in_a_row > len(self.files):
            raise SettingError(f"every train shard under {path.parent} is empty")

    def take(self, n: int) -> np.ndarray:
        parts = []
        while n > 0:
            if self.pos >= self.tokens.size:
                self._next_shard()
                continue
            k = min(n, self.tokens.size - self.pos)
            parts.append(self.tokens[self.pos : self.pos + k])
            self.pos, n = self.pos + k, n - k
        return np.concatenate(parts)


class TrainLoader:
    """Each micro-step takes the next world*local_tokens+1 tokens; rank r trains on its slice of them."""

    def __init__(self, files: list[Path], rt: Runtime, local_tokens: int, seq_len: int, vocab_size: int):
        self.stream = TokenStream(files, vocab_size)
        self.rt, self.local_tokens, self.seq_len = rt, local_tokens, seq_len

    def next_batch(self) -> tuple[Tensor, Tensor]:
        span = self.stream.take(self.rt.world * self.local_tokens + 1)
        start = self.rt.rank * self.local_tokens
        chunk = torch.from_numpy(span[start : start + self.local_tokens + 1].astype(np.int64))
        if self.rt.is_cuda:
            chunk = chunk.pin_memory().to(self.rt.device, non_blocking=True)
        return chunk[:-1].view(-1, self.seq_len), chunk[1:].view(-1, self.seq_len)


@dataclass(frozen=True)
class ByteTables:
    """Per token id, for BPB as CHALLENGE.md defines it: UTF-8 bytes of the piece without its leading
    '▁' (byte-fallback pieces 1, control/unknown 0), plus 1 for the '▁' unless the previous token is a
    control token (BOS starts every document, so a document's first space is not counted)."""

    base_bytes: np.ndarray  # int64 [V]
    has_space: np.ndarray  # bool [V]
    is_control: np.ndarray  # bool [V]

    def target_bytes(self, prev: np.ndarray, target: np.ndarray) -> np.ndarray:
        prev, target = prev.astype(np.int64), target.astype(np.int64)
        return self.base_bytes[target] + (self.has_space[target] & ~self.is_control[prev])


def build_byte_tables(sp: spm.SentencePieceProcessor, vocab_size: int) -> ByteTables:
    base = np.zeros(vocab_size, dtype=np.int64)
    space = np.zeros(vocab_size, dtype=bool)
    control = np.zeros(vocab_size, dtype=bool)
    for i in range(sp.get_piece_size()):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            control[i] = sp.is_control(i)
        elif sp.is_byte(i):
            base[i] = 1
        else:
            piece = sp.id_to_piece(i)
            if piece.startswith("\u2581"):
                space[i], piece = True, piece[1:]
            base[i] = len(piece.encode("utf-8"))
    return ByteTables(base, space, control)


def load_tokenizer(cfg: SimpleNamespace) -> spm.SentencePieceProcessor:
    path = Path(cfg.tokenizer_path)
    if not path.is_file():
        raise SettingError(f"TOKENIZER_PATH={path} does not exist; point it at the SentencePiece .model file")
    sp = spm.SentencePieceProcessor(model_file=str(path))
    if sp.get_piece_size() > cfg.vocab_size:
        raise SettingError(f"{path} has {sp.get_piece_size()} pieces, more than VOCAB_SIZE={cfg.vocab_size}")
    return sp


def load_eval_inputs(cfg: SimpleNamespace, phase: str) -> tuple[np.ndarray, ByteTables]:
    """The validation tokens and the tokenizer's byte tables (the tokenizer is checked first)."""
    tables = build_byte_tables(load_tokenizer(cfg), cfg.vocab_size)
    val = np.concatenate([read_shard(f) for f in find_shards(cfg.data_path, "val", phase)])
    check_token_range(val, cfg.vocab_size, f"validation shards under {cfg.data_path}")
    return val, tables


# -----------------------------------------------------------------------------
# Model
# -----------------------------------------------------------------------------


def rms_norm(x: Tensor) -> Tensor:
    return F.rms_norm(x, (x.size(-1),))


def rotary_tables(T: int, head_dim: int, base: float, device) -> tuple[Tensor, Tensor]:
    """cos/sin [T, head_dim/2] for rotary embeddings (Su et al., RoFormer, 2021)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(T, device=device, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class Attention(nn.Module):
    """Causal grouped-query attention (Ainslie et al., 2023) with RoPE, QK RMS-norm and a learned
    per-head query gain (the baseline's QK_GAIN_INIT)."""

    def __init__(self, dim: int, n_head: int, n_kv_head: int, rope_base: float, qk_gain: float):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = n_head, n_kv_head, dim // n_head
        self.rope_base = rope_base
        self.c_q = nn.Linear(dim, dim, bias=False)
        self.c_k = nn.Linear(dim, n_kv_head * self.head_dim, bias=False)
        self.c_v = nn.Linear(dim, n_kv_head * self.head_dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        nn.init.zeros_(self.proj.weight)  # each block starts as the identity (modded-nanogpt)
        self.q_gain = nn.Parameter(torch.full((n_head,), qk_gain))

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.c_v(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        cos, sin = rotary_tables(T, self.head_dim, self.rope_base, x.device)
        q = apply_rotary(rms_norm(q), cos, sin) * self.q_gain.to(q.dtype)[None, :, None, None]
        k = apply_rotary(rms_norm(k), cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv_head != self.n_head)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    """relu^2 MLP (So et al., Primer, 2021)."""

    def __init__(self, dim: int, mult: int):
        super().__init__()
        self.fc = nn.Linear(dim, mult * dim, bias=False)
        self.proj = nn.Linear(mult * dim, dim, bias=False)
        nn.init.zeros_(self.proj.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self, cfg: SimpleNamespace):
        super().__init__()
        dim = cfg.model_dim
        self.attn = Attention(dim, cfg.num_heads, cfg.num_kv_heads, cfg.rope_base, cfg.qk_gain_init)
        self.mlp = MLP(dim, cfg.mlp_mult)
        self.attn_scale = nn.Parameter(torch.ones(dim))
        self.mlp_scale = nn.Parameter(torch.ones(dim))
        # learned mix of the running stream and the embedding output x0 (value-residual style,
        # modded-nanogpt); starts as "stream only"
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))))

    def forward(self, x: Tensor, x0: Tensor) -> Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        x = x + self.attn_scale.to(x.dtype) * self.attn(rms_norm(x))
        return x + self.mlp_scale.to(x.dtype) * self.mlp(rms_norm(x))


class GPT(nn.Module):
    """forward(ids) -> raw logits [B*T, V] (before the softcap); forward(ids, targets) -> mean loss."""

    def __init__(self, cfg: SimpleNamespace):
        super().__init__()
        self.vocab_size, self.softcap = cfg.vocab_size, cfg.logit_softcap
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.model_dim)
        nn.init.normal_(self.tok_emb.weight, std=cfg.tied_embed_init_std)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        # U-Net skips: the first half's outputs feed the second half in reverse order (baseline)
        self.n_enc = cfg.num_layers // 2
        self.skip_weights = nn.Parameter(
            torch.ones(min(self.n_enc, cfg.num_layers - self.n_enc), cfg.model_dim)
        )

    def forward(self, ids: Tensor, targets: Tensor | None = None) -> Tensor:
        x = x0 = rms_norm(self.tok_emb(ids))
        skips = []
        for i, block in enumerate(self.blocks):
            j = i - self.n_enc
            if 0 <= j < self.skip_weights.size(0) and skips:
                x = x + self.skip_weights[j].to(x.dtype) * skips.pop()
            x = block(x, x0)
            if i < self.n_enc:
                skips.append(x)
        x = rms_norm(x).reshape(-1, x.size(-1))
        logits = F.linear(x, self.tok_emb.weight.to(x.dtype))
        if targets is None:
            return logits
        return softcap_cross_entropy_eager(logits, targets.reshape(-1), self.softcap).mean()


def softcap(logits: Tensor, cap: float) -> Tensor:
    """cap * tanh(logits / cap) in fp32 (Gemma 2's logit soft-capping)."""
    return cap * torch.tanh(logits.float() / cap)


def softcap_cross_entropy_eager(logits: Tensor, targets: Tensor, cap: float) -> Tensor:
    return F.cross_entropy(softcap(logits, cap), targets, reduction="none")


# -----------------------------------------------------------------------------
# Fused softcapped cross-entropy (Triton: CUDA, or CPU under the interpreter)
# -----------------------------------------------------------------------------
# One program per row. Softcapping bounds z = cap*tanh(x/cap) to [-cap, cap], so logsumexp can shift by
# the constant cap instead of a running max (exp(z - cap) >= exp(-2 cap) stays a normal fp32 for cap <= 40):
# one pass over the row, and no fp32 copy of the logits is ever materialized.

FUSED_CE_MAX_CAP = 40.0

if triton is not None:

    @triton.jit
    def _softcap_ce_forward_kernel(
        logits_ptr, targets_ptr, loss_ptr, lse_ptr, row_stride, V, cap, BLOCK: tl.constexpr
    ):
        row = tl.program_id(0).to(tl.int64)
        base = logits_ptr + row * row_stride
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, V, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < V
            x = tl.load(base + offs, mask=mask, other=0.0).to(tl.float32)
            z = cap * (2.0 * tl.sigmoid(2.0 * x / cap) - 1.0)  # tanh via sigmoid
            acc += tl.where(mask, tl.exp(z - cap), 0.0)
        lse = cap + tl.log(tl.sum(acc, axis=0))
        target = tl.load(targets_ptr + row)
        xt = tl.load(base + target).to(tl.float32)
        zt = cap * (2.0 * tl.sigmoid(2.0 * xt / cap) - 1.0)
        tl.store(loss_ptr + row, lse - zt)
        tl.store(lse_ptr + row, lse)

    @triton.jit
    def _softcap_ce_backward_kernel(
        logits_ptr, targets_ptr, lse_ptr, dloss_ptr, grad_ptr, row_stride, V, cap, BLOCK: tl.constexpr
    ):
        row = tl.program_id(0).to(tl.int64)
        base = logits_ptr + row * row_stride
        lse = tl.load(lse_ptr + row)
        dloss = tl.load(dloss_ptr + row)
        target = tl.load(targets_ptr + row)
        for start in range(0, V, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < V
            x = tl.load(base + offs, mask=mask, other=0.0).to(tl.float32)
            th = 2.0 * tl.sigmoid(2.0 * x / cap) - 1.0
            p = tl.exp(cap * th - lse)
            g = (p - tl.where(offs == target, 1.0, 0.0)) * (1.0 - th * th) * dloss
            tl.store(grad_ptr + row * V + offs, g.to(grad_ptr.dtype.element_ty), mask=mask)

    class _SoftcapCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, logits: Tensor, targets: Tensor, cap: float) -> Tensor:
            logits = logits.contiguous()
            N, V = logits.shape
            loss = torch.empty(N, device=logits.device, dtype=torch.float32)
            lse = torch.empty_like(loss)
            block = min(triton.next_power_of_2(V), 4096)
            _softcap_ce_forward_kernel[(N,)](
                logits, targets, loss, lse, logits.stride(0), V, cap, BLOCK=block
            )
            ctx.save_for_backward(logits, targets, lse)
            ctx.cap, ctx.block = cap, block
            return loss

        @staticmethod
        def backward(ctx, dloss: Tensor):
            logits, targets, lse = ctx.saved_tensors
            N, V = logits.shape
            grad = torch.empty_like(logits)
            args = (logits, targets, lse, dloss.float().contiguous(), grad, logits.stride(0), V, ctx.cap)
            _softcap_ce_backward_kernel[(N,)](*args, BLOCK=ctx.block)
            return grad, None, None


def fused_ce_available(device: torch.device, cap: float) -> bool:
    on_device = device.type == "cuda" or (TRITON_INTERPRET and device.type == "cpu")
    return triton is not None and on_device and cap <= FUSED_CE_MAX_CAP


def softcap_cross_entropy(logits: Tensor, targets: Tensor, cap: float, fused: bool = True) -> Tensor:
    """Per-row NLL of softcapped logits [N, V]; the Triton kernel where it can run, else eager."""
    if fused and fused_ce_available(logits.device, cap):
        return _SoftcapCrossEntropy.apply(logits, targets.contiguous(), float(cap))
    return softcap_cross_entropy_eager(logits, targets, cap)


# -----------------------------------------------------------------------------
# Optimizer: Muon for matrices, Adam for the rest
# -----------------------------------------------------------------------------


def orthogonalize(G: Tensor, steps: int) -> Tensor:
    """Approximate U V^T of G = U S V^T by a quintic Newton-Schulz iteration (Muon, Keller Jordan 2024;
    coefficients tuned there to push singular values into ~[0.7, 1.2] in few steps)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.to(torch.bfloat16 if G.is_cuda else torch.float32)
    tall = X.size(0) > X.size(1)
    if tall:
        X = X.T
    X = X / (X.norm() + 1e-7)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * (A @ A)) @ X
    return X.T if tall else X


class Muon(torch.optim.Optimizer):
    """SGD-Nesterov momentum, then each 2-D update orthogonalized. With several ranks each rank
    orthogonalizes every world-th matrix and one all-reduce shares the results."""

    def __init__(
        self, params, lr: float, momentum: float, backend_steps: int, weight_decay: float, rt: Runtime
    ):
        super().__init__(
            params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps, weight_decay=weight_decay)
        )
        self.rt = rt

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = group["params"]
            # bf16 on GPU halves the all-reduce (the update was computed in bf16 anyway)
            dtype = torch.bfloat16 if params[0].is_cuda else torch.float32
            flat = torch.zeros(sum(p.numel() for p in params), device=params[0].device, dtype=dtype)
            offset = 0
            for i, p in enumerate(params):
                if i % self.rt.world == self.rt.rank and p.grad is not None:
                    buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p.grad))
                    buf.mul_(group["momentum"]).add_(p.grad)
                    update = orthogonalize(p.grad.add(buf, alpha=group["momentum"]), group["backend_steps"])
                    update = update * max(1.0, p.size(0) / p.size(1)) ** 0.5  # same RMS for tall matrices
                    flat[offset : offset + p.numel()] = update.flatten().to(dtype)
                offset += p.numel()
            all_reduce_(self.rt, flat)
            offset = 0
            for p in params:
                if group["weight_decay"]:
                    p.mul_(1.0 - group["lr"] * group["weight_decay"])
                p.add_(flat[offset : offset + p.numel()].view_as(p).to(p.dtype), alpha=-group["lr"])
                offset += p.numel()


def build_optimizers(model: GPT, cfg: SimpleNamespace, rt: Runtime) -> list[torch.optim.Optimizer]:
    matrices = [m.weight for m in model.blocks.modules() if isinstance(m, nn.Linear)]
    matrix_ids = {id(p) for p in matrices}
    scalars = [p for p in model.blocks.parameters() if id(p) not in matrix_ids] + [model.skip_weights]
    adam = dict(betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps, fused=rt.is_cuda)
    optimizers = [
        torch.optim.Adam([dict(params=[model.tok_emb.weight], lr=cfg.tied_embed_lr)], **adam),
        torch.optim.Adam([dict(params=scalars, lr=cfg.scalar_lr)], **adam),
        Muon(matrices, cfg.matrix_lr, cfg.muon_momentum, cfg.muon_backend_steps, cfg.muon_weight_decay, rt),
    ]
    for opt in optimizers:
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
    return optimizers


def lr_scale(step: int, elapsed_ms: float, cfg: SimpleNamespace) -> float:
    """Linear warmup over LR_WARMUP_STEPS, then linear warmdown to 0 over the last WARMDOWN_ITERS steps.
    With a wall-clock cap the warmdown is keyed on time left, WARMDOWN_ITERS steps at the mean step time
    so far (as the official baseline does); without a cap on ITERATIONS."""
    scale = min(1.0, (step + 1) / cfg.lr_warmup_steps) if cfg.lr_warmup_steps > 0 else 1.0
    if cfg.warmdown_iters <= 0:
        return scale
    if cfg.max_wallclock_seconds > 0:
        warmdown_ms = cfg.warmdown_iters * elapsed_ms / max(step, 1)
        remaining_ms = max(cfg.max_wallclock_seconds * 1000.0 - elapsed_ms, 0.0)
        if warmdown_ms > 0 and remaining_ms < warmdown_ms:
            scale *= remaining_ms / warmdown_ms
        return scale
    return scale * min(1.0, max(cfg.iterations - step, 0) / cfg.warmdown_iters)


# -----------------------------------------------------------------------------
# Training
# -----------------------------------------------------------------------------


def build_model(cfg: SimpleNamespace, device: torch.device) -> GPT:
    return GPT(cfg).to(device)


def grad_accum_steps(cfg: SimpleNamespace, rt: Runtime) -> int:
    accum = cfg.grad_accum_steps or (max(1, 8 // rt.world) if rt.is_cuda else 1)
    if cfg.train_batch_tokens % (rt.world * accum * cfg.train_seq_len):
        raise SettingError(
            f"TRAIN_BATCH_TOKENS={cfg.train_batch_tokens} must split into {rt.world} ranks x {accum} "
            f"micro-batches x whole sequences of TRAIN_SEQ_LEN={cfg.train_seq_len}"
        )
    return accum


class Trainer:
    """Holds the live model, optimizers and data; `step()` runs one optimizer step."""

    def __init__(self, cfg: SimpleNamespace, rt: Runtime, train_files: list[Path]):
        self.cfg, self.rt = cfg, rt
        self.accum = grad_accum_steps(cfg, rt)
        self.local_tokens = cfg.train_batch_tokens // (rt.world * self.accum)
        self.train_files = train_files
        self.model = build_model(cfg, rt.device)
        self.optimizers = build_optimizers(self.model, cfg, rt)
        compiled = torch.compile(self.model, dynamic=False) if rt.is_cuda and cfg.compile else self.model
        self.net = compiled
        if rt.world > 1:
            devices = [rt.local_rank] if rt.is_cuda else None
            self.net = DistributedDataParallel(compiled, device_ids=devices, broadcast_buffers=False)
        self.fused = cfg.fused_ce and fused_ce_available(rt.device, cfg.logit_softcap)
        self.reset_data()

    def reset_data(self) -> None:
        self.loader = TrainLoader(
            self.train_files, self.rt, self.local_tokens, self.cfg.train_seq_len, self.cfg.vocab_size
        )

    def step(self, step: int, elapsed_ms: float) -> Tensor:
        """One optimizer step over accum micro-batches; returns this rank's mean loss (a device scalar)."""
        cfg = self.cfg
        scale = lr_scale(step, elapsed_ms, cfg)
        ramp = min(1.0, step / cfg.muon_momentum_warmup_steps) if cfg.muon_momentum_warmup_steps > 0 else 1.0
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * scale
                if isinstance(opt, Muon):
                    group["momentum"] = (1 - ramp) * cfg.muon_momentum_warmup_start + ramp * cfg.muon_momentum
        total = torch.zeros((), device=self.rt.device)
        for micro in range(self.accum):
            x, y = self.loader.next_batch()
            if self.rt.world > 1:  # all-reduce gradients only after the last micro-batch
                self.net.require_backward_grad_sync = micro == self.accum - 1
            with self.rt.autocast():
                if self.fused:
                    loss = softcap_cross_entropy(self.net(x), y.reshape(-1), cfg.logit_softcap).mean()
                else:
                    loss = self.net(x, y)
            (loss / self.accum).backward()
            total += loss.detach()
        if cfg.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip_norm)
        for opt in self.optimizers:
            opt.step()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        return total / self.accum

    def warm_up_compile(self) -> bool:
        """WARMUP_STEPS of warm_up() when compiling on CUDA (eager CPU has nothing to build); whether it ran."""
        if not (self.rt.is_cuda and self.cfg.compile and self.cfg.warmup_steps > 0):
            return False
        self.warm_up(self.cfg.warmup_steps)
        return True

    def warm_up(self, steps: int) -> None:
        """Run `steps` steps so torch.compile builds its graphs, then restore the initial weights,
        optimizer state and data position: measured training starts from the true init (baseline)."""
        model_state = copy.deepcopy(self.model.state_dict())
        opt_states = [copy.deepcopy(opt.state_dict()) for opt in self.optimizers]
        for i in range(steps):
            self.step(i, 0.0)
        self.model.load_state_dict(model_state)
        for opt, state in zip(self.optimizers, opt_states, strict=True):
            opt.load_state_dict(state)
            for group in opt.param_groups:
                group["lr"] = group["base_lr"]
        self.reset_data()
        self.rt.sync()


def train(
    cfg: SimpleNamespace, rt: Runtime, out_dir: Path, train_files: list[Path], val_for_monitoring=None
) -> tuple[GPT, dict]:
    """Train under the wall-clock cap; returns the (unwrapped) model and a summary.
    val_for_monitoring: (val tokens, byte tables) for the periodic val loss, or None."""
    trainer = Trainer(cfg, rt, train_files)
    n_params = sum(p.numel() for p in trainer.model.parameters())
    rt.log(
        f"model: {n_params:,} parameters | world {rt.world} x grad_accum {trainer.accum} | "
        f"device {rt.device} | fused_ce {trainer.fused} | {len(train_files)} train shards"
    )
    t_warm = time.perf_counter()
    if trainer.warm_up_compile():
        rt.log(
            f"compile warm-up: {cfg.warmup_steps} steps in {time.perf_counter() - t_warm:.1f}s (not timed)"
        )
    curve = open(out_dir / "curve.jsonl", "w") if rt.master else None  # noqa: SIM115 (kept open while training)
    max_ms = cfg.max_wallclock_seconds * 1000.0
    train_ms, elapsed_ms, step = 0.0, 0.0, 0  # train_ms: timed total before the current stretch
    rt.sync()
    t0 = time.perf_counter()
    while step < cfg.iterations:
        loss = trainer.step(step, train_ms + 1000.0 * (time.perf_counter() - t0))
        step += 1
        rt.sync()  # the cap is on finished work, not on queued kernels
        elapsed_ms = train_ms + 1000.0 * (time.perf_counter() - t0)
        stop = torch.tensor(float(max_ms > 0 and elapsed_ms >= max_ms), device=rt.device)
        stop = all_reduce_(rt, stop, dist.ReduceOp.MAX).item() > 0  # every rank stops at the same step
        last = stop or step >= cfg.iterations
        if cfg.train_log_every > 0 and (step % cfg.train_log_every == 0 or step <= 5 or last):
            mean_loss = all_reduce_(rt, loss.detach().clone()).item() / rt.world
            tokens_per_s = step * cfg.train_batch_tokens / max(elapsed_ms / 1000.0, 1e-9)
            rt.log(
                f"step:{step}/{cfg.iterations} train_loss:{mean_loss:.4f} train_time:{elapsed_ms:.0f}ms "
                f"step_avg:{elapsed_ms / step:.2f}ms tok/s:{tokens_per_s:,.0f}"
            )
            if curve is not None:
                curve.write(
                    json.dumps({"step": step, "train_loss": mean_loss, "elapsed_ms": elapsed_ms}) + "\n"
                )
                curve.flush()
        if (
            val_for_monitoring is not None
            and cfg.val_loss_every > 0
            and (step % cfg.val_loss_every == 0 or last)
        ):
            train_ms, pause = elapsed_ms, time.perf_counter()  # the timer stops while validating
            result = evaluate(trainer.model, val_for_monitoring[0], cfg, rt, val_for_monitoring[1])
            rt.log(
                f"step:{step} val_loss:{result.val_loss:.4f} val_bpb:{result.val_bpb:.4f} "
                f"(eval {time.perf_counter() - pause:.1f}s, not timed)"
            )
            t0 = time.perf_counter()
        if stop:
            rt.log(
                f"stopping at step {step}: wall-clock cap MAX_WALLCLOCK_SECONDS={cfg.max_wallclock_seconds}"
            )
            break
    if curve is not None:
        curve.close()
    peak = f" | peak memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if rt.is_cuda else ""
    rt.log(f"trained {step} steps in {elapsed_ms / 1000.0:.1f}s{peak}")
    return trainer.model, {"train_seconds": elapsed_ms / 1000.0, "steps": step}


# -----------------------------------------------------------------------------
# Export: per-row quantization, packing, compression
# -----------------------------------------------------------------------------
# Artifact layout before compression: b"AGQ1", uint32 header length, JSON header (one entry per tensor:
# name, shape, kind "q"/"f16", bits), then every int8 payload in header order, then every fp16 payload
# (row scales and small tensors). Integers and floats are kept apart because they compress differently.

ARTIFACT_MAGIC = b"AGQ1"
EMBED_NAME = "tok_emb.weight"
CLIP_RATIOS = (1.0, 0.995, 0.99, 0.98, 0.96, 0.94, 0.92, 0.9, 0.87, 0.84, 0.8)


def quantize_rows(w: Tensor, bits: int, clip_search: bool, floor: float = 0.0) -> tuple[Tensor, Tensor]:
    """Symmetric per-row quantization to [-(2^(bits-1)-1), 2^(bits-1)-1]: int8 values and fp16 row scales.
    A row's step is absmax / qmax but at least `floor` (the official baseline's 1/127: small rows share one
    coarser grid, which compresses much better). With clip_search each row picks the clip (a fraction of
    its absmax) with the least squared error, a cheap cousin of the clip search in GPTQ-style int6 records."""
    w = w.detach().float()
    qmax = 2 ** (bits - 1) - 1
    absmax = w.abs().amax(dim=1, keepdim=True)
    best_q = best_scale = best_err = None
    for ratio in CLIP_RATIOS if clip_search else (1.0,):
        # scales are stored as fp16: round them up so the unclipped row still fits in [-qmax, qmax]
        step = torch.clamp(absmax * ratio / qmax, min=floor)
        scale = (step * (1.0 + 2.0**-10)).half().float().clamp_min(2.0**-24)
        q = (w / scale).round().clamp_(-qmax, qmax)
        err = (q * scale - w).square().sum(dim=1, keepdim=True)
        if best_err is None:
            best_q, best_scale, best_err = q, scale, err
        else:
            better = err < best_err
            best_q = torch.where(better, q, best_q)
            best_scale = torch.where(better, scale, best_scale)
            best_err = torch.minimum(err, best_err)
    return best_q.to(torch.int8), best_scale.squeeze(1).half()


def pack_state(state: dict[str, Tensor], cfg: SimpleNamespace) -> bytes:
    entries, ints, floats = [], [], []
    for name, t in state.items():  # quantized where the weights live (the GPU makes the clip search fast)
        t = t.detach()
        bits = cfg.quant_bits_embed if name == EMBED_NAME else cfg.quant_bits_matrix
        if t.ndim == 2 and t.numel() > cfg.quant_keep_float_numel and bits < 16:
            q, scale = quantize_rows(t, bits, cfg.quant_clip_search, cfg.quant_scale_floor)
            entries.append({"name": name, "shape": list(t.shape), "kind": "q", "bits": bits})
            ints.append(q.cpu().numpy().tobytes())
            floats.append(scale.cpu().numpy().tobytes())
        else:
            entries.append({"name": name, "shape": list(t.shape), "kind": "f16"})
            floats.append(t.half().cpu().numpy().tobytes())
    header = json.dumps({"tensors": entries}, separators=(",", ":")).encode()
    return ARTIFACT_MAGIC + struct.pack("<I", len(header)) + header + b"".join(ints) + b"".join(floats)


def unpack_state(blob: bytes, where: str = "artifact") -> dict[str, Tensor]:
    """Inverse of pack_state: fp32 tensors, quantized ones dequantized row by row."""
    if blob[:4] != ARTIFACT_MAGIC:
        raise SettingError(f"{where}: not an autogolf artifact (magic {blob[:4]!r})")
    (header_len,) = struct.unpack("<I", blob[4:8])
    entries = json.loads(blob[8 : 8 + header_len])["tensors"]
    pos = 8 + header_len
    payloads = {}
    for e in entries:  # int8 section
        if e["kind"] == "q":
            n = math.prod(e["shape"])
            payloads[e["name"]] = np.frombuffer(blob, dtype=np.int8, count=n, offset=pos)
            pos += n
    state = {}
    for e in entries:  # fp16 section
        rows = e["shape"][0]
        n = rows if e["kind"] == "q" else math.prod(e["shape"])
        half = torch.from_numpy(np.frombuffer(blob, dtype="<f2", count=n, offset=pos).copy()).float()
        pos += 2 * n
        if e["kind"] == "q":
            q = torch.from_numpy(payloads[e["name"]].copy()).float().view(e["shape"])
            state[e["name"]] = q * half[:, None]
        else:
            state[e["name"]] = half.view(e["shape"])
    if pos != len(blob):
        raise SettingError(
            f"{where}: {len(blob) - pos} bytes left over after the last tensor; corrupt artifact"
        )
    return state


def _compressors() -> dict[str, tuple[str, object, object]]:
    """name -> (file suffix, compress, decompress), for those installed."""
    table = {
        "zlib": (".zlib", lambda b: zlib.compress(b, 9), zlib.decompress),
        "lzma": (".xz", lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
    }
    if zstandard is not None:
        table["zstd"] = (
            ".zst",
            lambda b: zstandard.ZstdCompressor(level=22).compress(b),
            lambda b: zstandard.ZstdDecompressor().decompress(b),
        )
    if brotli is not None:
        table["brotli"] = (".br", lambda b: brotli.compress(b, quality=11, lgwin=24), brotli.decompress)
    return table


def compress(raw: bytes, choice: str) -> tuple[str, bytes]:
    """(compressor name, compressed bytes): the named compressor, or for "auto" the smallest of all
    installed ones (run in parallel threads; each releases the GIL)."""
    table = _compressors()
    if choice != "auto":
        if choice not in table:
            raise SettingError(
                f"COMPRESSOR={choice} is not installed here; pip install it or use COMPRESSOR=auto"
            )
        return choice, table[choice][1](raw)
    with ThreadPoolExecutor(len(table)) as pool:
        results = dict(zip(table, pool.map(lambda name: table[name][1](raw), table), strict=True))
    best = min(results, key=lambda name: len(results[name]))
    return best, results[best]


def write_artifact(model: nn.Module, cfg: SimpleNamespace, artifact_dir: Path) -> dict:
    raw = pack_state(model.state_dict(), cfg)
    name, blob = compress(raw, cfg.compressor)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    for old in artifact_dir.glob("model.*"):  # the folder holds the compressed model and nothing else
        old.unlink()
    path = artifact_dir / f"model{_compressors()[name][0]}"
    tmp = artifact_dir / f".{path.name}.tmp"
    tmp.write_bytes(blob)
    tmp.replace(path)
    return {"compressor": name, "bytes_model": len(blob), "bytes_raw": len(raw), "artifact": str(path)}


def read_artifact(artifact_dir: Path) -> dict[str, Tensor]:
    table = _compressors()
    files = sorted(artifact_dir.glob("model.*")) if artifact_dir.is_dir() else []
    if len(files) != 1:
        raise SettingError(
            f"the eval phase needs exactly one model.* file in GOLF_ARTIFACT_DIR={artifact_dir}, found "
            f"{[f.name for f in files]}; run GOLF_PHASE=train first (or point GOLF_ARTIFACT_DIR at its output)"
        )
    path = files[0]
    by_suffix = {suffix: decompress for suffix, _, decompress in table.values()}
    if path.suffix not in by_suffix:
        raise SettingError(f"{path}: no installed decompressor for {path.suffix!r}; install zstandard/brotli")
    return unpack_state(by_suffix[path.suffix](path.read_bytes()), str(path))


def load_model_from_artifact(cfg: SimpleNamespace, rt: Runtime, artifact_dir: Path) -> GPT:
    state = read_artifact(artifact_dir)
    model = build_model(cfg, rt.device)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise SettingError(f"the artifact in {artifact_dir} does not fit the model knobs: {exc}") from None
    return model


# -----------------------------------------------------------------------------
# Evaluation: per-token NLL, sliding windows, log-prob rows, BPB
# -----------------------------------------------------------------------------


@dataclass
class EvalResult:
    nll: Tensor  # float32 [n]: NLL in nats of val[p + 1], p = 0 .. n-1 (complete on rank 0)
    rows: Tensor | None  # float32 [P, V]: log-prob rows at the requested positions, in request order
    val_loss: float
    val_bpb: float
    scored_bytes: int


def plan_windows(n: int, S: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Window starts and, per window, the first scored offset, so that the scored targets of all windows
    are exactly positions 0..n-1 once each. Window w reads val[s : s + S] and predicts val[s+1 : s+S+1],
    i.e. positions s .. s+S-1. With a stride < S every window after the first scores only the positions
    the previous ones left, each with at least S - stride tokens of context (sliding-window eval)."""
    if stride <= 0 or stride >= S:
        starts = np.arange(0, n, S, dtype=np.int64)
        return starts, np.zeros_like(starts)
    starts = list(range(0, n - S + 1, stride))
    if starts[-1] != n - S:
        starts.append(n - S)
    starts = np.asarray(starts, dtype=np.int64)
    first = np.zeros_like(starts)
    first[1:] = starts[:-1] + S - starts[1:]
    return starts, first


def scored_targets(val: np.ndarray, S: int) -> int:
    """n = ((N-1)//S)*S: the targets val[1..n] that fit in whole sequences of S."""
    n = ((val.size - 1) // S) * S
    if n <= 0:
        raise SettingError(
            f"the validation set has {val.size} tokens, too few for EVAL_SEQ_LEN={S}; lower it"
        )
    return n


def read_check_positions(path: str, n: int) -> np.ndarray:
    positions = np.fromfile(path, dtype="<i8")
    bad = positions[(positions < 0) | (positions >= n)]
    if bad.size:
        raise SettingError(f"GOLF_CHECK_POSITIONS={path}: position {int(bad[0])} is outside 0..{n - 1}")
    return positions


@torch.no_grad()
def evaluate(
    model: GPT,
    val: np.ndarray,
    cfg: SimpleNamespace,
    rt: Runtime,
    tables: ByteTables,
    positions: np.ndarray | None = None,
) -> EvalResult:
    """Score every target val[1..n] (see scored_targets), split over ranks and gathered to all of them.
    NLL and rows both come from fp32 log-softmax of the softcapped logits, so they agree exactly."""
    S = cfg.eval_seq_len
    n = scored_targets(val, S)
    starts, first = plan_windows(n, S, cfg.eval_stride)
    lo, hi = len(starts) * rt.rank // rt.world, len(starts) * (rt.rank + 1) // rt.world
    per_batch = max(1, cfg.val_batch_size // (S * rt.world))
    was_training = model.training
    model.eval()
    net = torch.compile(model, dynamic=False) if rt.is_cuda and cfg.compile else model
    nll = torch.zeros(n, device=rt.device, dtype=torch.float32)
    wanted, inverse = np.unique(positions, return_inverse=True) if positions is not None else (None, None)
    rows = torch.zeros(len(wanted), cfg.vocab_size, device=rt.device) if wanted is not None else None
    offsets = np.arange(S + 1, dtype=np.int64)
    j = torch.arange(S, device=rt.device)
    for b0 in range(lo, hi, per_batch):
        st, fs = starts[b0 : min(b0 + per_batch, hi)], first[b0 : min(b0 + per_batch, hi)]
        windows = torch.from_numpy(val[st[:, None] + offsets].astype(np.int64)).to(rt.device)
        with rt.autocast():
            logits = net(windows[:, :-1])
        z = softcap(logits, cfg.logit_softcap)  # fp32 [b*S, V]
        token_nll = F.cross_entropy(z, windows[:, 1:].reshape(-1), reduction="none").view(len(st), S)
        st_t, fs_t = torch.from_numpy(st).to(rt.device), torch.from_numpy(fs).to(rt.device)
        keep = j[None, :] >= fs_t[:, None]
        nll[(st_t[:, None] + j[None, :])[keep]] = token_nll[keep]
        if wanted is not None:
            a = np.searchsorted(wanted, st + fs, side="left")
            b = np.searchsorted(wanted, st + S, side="left")
            for w in np.nonzero(b > a)[0]:
                local = torch.from_numpy(wanted[a[w] : b[w]] - st[w]).to(rt.device)
                rows[a[w] : b[w]] = F.log_softmax(z.view(len(st), S, -1)[w, local], dim=-1)
    all_reduce_(rt, nll)
    if rows is not None:
        all_reduce_(rt, rows)
        rows = rows[torch.from_numpy(inverse.reshape(-1)).to(rt.device)]
    model.train(was_training)
    scored_bytes = int(tables.target_bytes(val[:n], val[1 : n + 1]).sum())
    nll_sum = float(nll.double().sum())
    val_bpb = nll_sum / math.log(2) / max(scored_bytes, 1)
    return EvalResult(nll.cpu(), None if rows is None else rows.cpu(), nll_sum / n, val_bpb, scored_bytes)


# -----------------------------------------------------------------------------
# Main: phases
# -----------------------------------------------------------------------------


def run_eval(
    cfg: SimpleNamespace, rt: Runtime, out_dir: Path, artifact_dir: Path, phase: str, inputs=None
) -> dict:
    """inputs: (val tokens, byte tables) already loaded by the all phase, else loaded here (timed)."""
    t0 = time.perf_counter()
    val, tables = inputs or load_eval_inputs(cfg, phase)
    model = load_model_from_artifact(cfg, rt, artifact_dir)
    check_path = os.environ.get("GOLF_CHECK_POSITIONS")
    n = scored_targets(val, cfg.eval_seq_len)
    positions = read_check_positions(check_path, n) if check_path else None
    result = evaluate(model, val, cfg, rt, tables, positions)
    if rt.master:
        result.nll.numpy().astype("<f4").tofile(out_dir / "val_nll.f32")
        if result.rows is not None:
            result.rows.numpy().astype("<f4").tofile(out_dir / "check_rows.f32")
    rt.sync()
    eval_seconds = time.perf_counter() - t0
    rt.log(
        f"eval: val_loss:{result.val_loss:.4f} val_bpb:{result.val_bpb:.4f} over {n:,} tokens, "
        f"{result.scored_bytes:,} bytes, stride {cfg.eval_stride or cfg.eval_seq_len} in {eval_seconds:.1f}s"
    )
    return {
        "val_bpb": result.val_bpb,
        "val_loss": result.val_loss,
        "eval_seconds": eval_seconds,
        "scored_tokens": n,
        "scored_bytes": result.scored_bytes,
        "val_tokens": int(val.size),
    }


def main() -> None:
    phase = os.environ.get("GOLF_PHASE", "all")
    if phase not in ("train", "eval", "all"):
        raise SettingError(f"GOLF_PHASE={phase!r} must be train, eval or all")
    cfg = read_settings(os.environ)
    out_dir = Path(os.environ.get("GOLF_OUT") or ".")
    artifact_dir = Path(os.environ.get("GOLF_ARTIFACT_DIR") or out_dir / "artifact")
    rt = init_runtime()
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    # The train phase's report is $GOLF_OUT/result.json (train_seconds, steps, export sizes); an eval
    # phase run in the same folder carries those fields over and replaces it with the final report.
    report_path = out_dir / "result.json"
    summary: dict = {"phase": phase, "world_size": rt.world}
    eval_inputs = None
    if phase in ("train", "all"):
        if rt.master:
            report_path.unlink(missing_ok=True)  # a stale report must not outlive a failed run
        train_files = find_shards(cfg.data_path, "train", phase)
        monitor = None
        if phase == "all":  # fail on missing eval inputs before training, not after it
            eval_inputs = load_eval_inputs(cfg, phase)
            monitor = eval_inputs if cfg.val_loss_every > 0 else None
        model, trained = train(cfg, rt, out_dir, train_files, monitor)
        if rt.master:
            t_export = time.perf_counter()
            exported = write_artifact(model, cfg, artifact_dir)
            if cfg.save_raw_model:
                torch.save(model.state_dict(), out_dir / "raw_model.pt")
            trained.update(exported)
            rt.log(
                f"export: {exported['bytes_model']:,} bytes ({exported['compressor']}; raw "
                f"{exported['bytes_raw']:,}) in {time.perf_counter() - t_export:.1f}s"
            )
            trained.update(bytes_code=os.path.getsize(__file__), vocab_size=cfg.vocab_size)
            if phase == "train":
                report_path.write_text(json.dumps({**summary, **trained}, indent=2))
        summary.update(trained)
        del model
        if rt.world > 1:
            dist.barrier()
    if phase in ("eval", "all"):
        if phase == "eval" and report_path.is_file():  # train seconds and steps from the train phase
            train_report = json.loads(report_path.read_text())
            if isinstance(train_report, dict) and train_report.get("phase") == "train":
                summary.update({k: v for k, v in train_report.items() if k != "phase"})
        summary.update(run_eval(cfg, rt, out_dir, artifact_dir, phase, eval_inputs))
        summary.update(
            bytes_code=os.path.getsize(__file__),
            bytes_model=sum(f.stat().st_size for f in artifact_dir.iterdir() if f.is_file()),
            eval_seq_len=cfg.eval_seq_len,
            eval_stride=cfg.eval_stride,
            vocab_size=cfg.vocab_size,
            phase=phase,
        )
        summary.setdefault("train_seconds", None)
        summary.setdefault("steps", None)
        if rt.master:
            report_path.write_text(json.dumps(summary, indent=2))
            total = summary["bytes_code"] + summary["bytes_model"]
            rt.log(
                f"final_int{cfg.quant_bits_matrix}_roundtrip val_bpb:{summary['val_bpb']:.8f} "
                f"val_loss:{summary['val_loss']:.8f} bytes_total:{total:,}"
            )
    if rt.world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main()
    except SettingError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
