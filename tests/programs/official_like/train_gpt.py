"""An official-structure program for tests: laid out as the challenge's first records are, not to
autogolf's contract, and small enough to train on a CPU in seconds.

It has the pieces those records share, under their names: ``class Hyperparameters`` (environment
reads with casts and defaults), ``build_sentencepiece_luts``, ``load_validation_tokens`` (called at
start-up), ``eval_val`` (the records' signature and byte accounting), an int8 state-dict quantizer
and its ``dequantize_state_dict_int8``, a ``GPT`` whose ``forward(input_ids, target_ids)`` returns
the mean cross-entropy through ``F.cross_entropy``, and a ``main`` that trains, writes
``final_model.int8.ptz`` (torch.save + zlib) in its working directory, reloads it and prints its
score on a final line. The model is a two-layer MLP over the previous token and a running mean of the
context (causal, so its eval scores each target from what precedes it).
"""

import glob
import io
import math
import os
import time
import zlib

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Hyperparameters:
    data_path = os.environ.get("DATA_PATH", "./data/datasets/fineweb10B_sp1024")
    train_files = os.path.join(data_path, "fineweb_train_*.bin")
    val_files = os.path.join(data_path, "fineweb_val_*.bin")
    tokenizer_path = os.environ.get("TOKENIZER_PATH", "./data/tokenizers/fineweb_1024_bpe.model")
    seed = int(os.environ.get("SEED", 1337))
    iterations = int(os.environ.get("ITERATIONS", 20000))
    train_log_every = int(os.environ.get("TRAIN_LOG_EVERY", 5))
    train_batch_tokens = int(os.environ.get("TRAIN_BATCH_TOKENS", 2048))
    train_seq_len = int(os.environ.get("TRAIN_SEQ_LEN", 64))
    val_batch_size = int(os.environ.get("VAL_BATCH_SIZE", 16384))
    max_wallclock_seconds = float(os.environ.get("MAX_WALLCLOCK_SECONDS", 600.0))
    vocab_size = int(os.environ.get("VOCAB_SIZE", 1024))
    model_dim = int(os.environ.get("MODEL_DIM", 32))
    lr = float(os.environ.get("LR", 0.02))


def build_sentencepiece_luts(sp, vocab_size: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    size = max(int(sp.vocab_size()), vocab_size)
    base = np.zeros(size, dtype=np.int16)
    space = np.zeros(size, dtype=np.bool_)
    boundary = np.ones(size, dtype=np.bool_)
    for token in range(int(sp.vocab_size())):
        if sp.is_control(token) or sp.is_unknown(token) or sp.is_unused(token):
            continue
        boundary[token] = False
        if sp.is_byte(token):
            base[token] = 1
            continue
        piece = sp.id_to_piece(token)
        if piece.startswith("\u2581"):
            space[token] = True
            piece = piece[1:]
        base[token] = len(piece.encode("utf-8"))
    return (
        torch.tensor(base, dtype=torch.int16, device=device),
        torch.tensor(space, dtype=torch.bool, device=device),
        torch.tensor(boundary, dtype=torch.bool, device=device),
    )


def load_data_shard(path: str) -> Tensor:
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[0] == 20240520 and header[1] == 1, path
    tokens = np.fromfile(path, dtype="<u2", count=int(header[2]), offset=256 * 4)
    return torch.from_numpy(tokens.astype(np.int64))


def load_validation_tokens(pattern: str, seq_len: int) -> Tensor:
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no files for pattern {pattern}")
    tokens = torch.cat([load_data_shard(f) for f in files])
    usable = ((tokens.numel() - 1) // seq_len) * seq_len
    return tokens[: usable + 1]


def eval_val(
    args,
    model: nn.Module,
    rank: int,
    world_size: int,
    device: torch.device,
    grad_accum_steps: int,
    val_tokens: Tensor,
    base_bytes_lut: Tensor,
    has_leading_space_lut: Tensor,
    is_boundary_token_lut: Tensor,
) -> tuple[float, float]:
    seqs_per_batch = max(1, args.val_batch_size // (world_size * grad_accum_steps) // args.train_seq_len)
    total_seqs = (val_tokens.numel() - 1) // args.train_seq_len
    loss_sum = torch.zeros((), dtype=torch.float64)
    token_count = torch.zeros((), dtype=torch.float64)
    byte_count = torch.zeros((), dtype=torch.float64)
    model.eval()
    with torch.inference_mode():
        for first in range(rank, total_seqs, seqs_per_batch * world_size):
            last = min(first + seqs_per_batch, total_seqs)
            chunk = val_tokens[first * args.train_seq_len : last * args.train_seq_len + 1].to(device)
            x = chunk[:-1].reshape(-1, args.train_seq_len)
            y = chunk[1:].reshape(-1, args.train_seq_len)
            loss = model(x, y).detach()
            loss_sum += loss.double() * y.numel()
            token_count += y.numel()
            counted = base_bytes_lut[y].to(torch.int64)
            counted += (has_leading_space_lut[y] & ~is_boundary_token_lut[x]).to(torch.int64)
            byte_count += counted.sum().double()
    model.train()
    val_loss = loss_sum / token_count
    return float(val_loss.item()), float((val_loss / math.log(2) * token_count / byte_count).item())


def quantize_state_dict_int8(state_dict: dict[str, Tensor]) -> dict[str, object]:
    quantized, scales, dtypes = {}, {}, {}
    for name, tensor in state_dict.items():
        t = tensor.detach().float()
        scale = t.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8) / 127.0 if t.ndim == 2 else None
        if scale is None:
            quantized[name] = t
        else:
            quantized[name] = torch.round(t / scale).to(torch.int8)
            scales[name] = scale
        dtypes[name] = str(tensor.dtype).removeprefix("torch.")
    return {"quantized": quantized, "scales": scales, "dtypes": dtypes}


def dequantize_state_dict_int8(obj: dict[str, object]) -> dict[str, Tensor]:
    out = {}
    for name, q in obj["quantized"].items():
        value = q.float() * obj["scales"][name] if name in obj["scales"] else q
        out[name] = value.to(getattr(torch, obj["dtypes"][name]))
    return out


class GPT(nn.Module):
    def __init__(self, vocab_size: int, model_dim: int):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, model_dim)
        self.fc = nn.Linear(2 * model_dim, 2 * model_dim)
        self.head = nn.Linear(2 * model_dim, vocab_size)

    def forward(self, input_ids: Tensor, target_ids: Tensor) -> Tensor:
        x = self.tok_emb(input_ids)
        positions = torch.arange(1, x.size(1) + 1, device=x.device, dtype=x.dtype).view(1, -1, 1)
        context = x.cumsum(dim=1) / positions
        h = torch.relu(self.fc(torch.cat([x, context], dim=-1)))
        logits = self.head(h).reshape(-1, self.head.out_features)
        return F.cross_entropy(logits.float(), target_ids.reshape(-1), reduction="mean")


def main() -> None:
    args = Hyperparameters()
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sp = spm.SentencePieceProcessor(model_file=args.tokenizer_path)
    val_tokens = load_validation_tokens(args.val_files, args.train_seq_len)  # at start-up, as records do
    luts = build_sentencepiece_luts(sp, args.vocab_size, device)
    train_tokens = torch.cat([load_data_shard(f) for f in sorted(glob.glob(args.train_files))])
    base_model = GPT(vocab_size=args.vocab_size, model_dim=args.model_dim).to(device)
    optimizer = torch.optim.Adam(base_model.parameters(), lr=args.lr)
    seqs = args.train_batch_tokens // args.train_seq_len
    started = time.perf_counter()
    step = 0
    while step < args.iterations:
        starts = torch.randint(0, train_tokens.numel() - args.train_seq_len - 1, (seqs,))
        batch = torch.stack([train_tokens[s : s + args.train_seq_len + 1] for s in starts.tolist()]).to(
            device
        )
        loss = base_model(batch[:, :-1], batch[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        elapsed_ms = 1000 * (time.perf_counter() - started)
        if step % args.train_log_every == 0 or step == args.iterations:
            print(f"step:{step}/{args.iterations} train_loss:{loss.item():.4f} train_time:{elapsed_ms:.0f}ms")
        if args.max_wallclock_seconds > 0 and elapsed_ms > 1000 * args.max_wallclock_seconds:
            break
    val_loss, val_bpb = eval_val(args, base_model, 0, 1, device, 8, val_tokens, *luts)
    print(f"step:{step}/{args.iterations} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f}")
    torch.save(base_model.state_dict(), "final_model.pt")
    buffer = io.BytesIO()
    torch.save(quantize_state_dict_int8(base_model.state_dict()), buffer)
    with open("final_model.int8.ptz", "wb") as f:
        f.write(zlib.compress(buffer.getvalue(), 9))
    with open("final_model.int8.ptz", "rb") as f:
        quant_state = torch.load(io.BytesIO(zlib.decompress(f.read())), map_location="cpu")
    base_model.load_state_dict(dequantize_state_dict_int8(quant_state), strict=True)
    q_val_loss, q_val_bpb = eval_val(args, base_model, 0, 1, device, 8, val_tokens, *luts)
    print(f"final_int8_zlib_roundtrip val_loss:{q_val_loss:.4f} val_bpb:{q_val_bpb:.4f}")
    print(f"final_int8_zlib_roundtrip_exact val_loss:{q_val_loss:.8f} val_bpb:{q_val_bpb:.8f}")


if __name__ == "__main__":
    main()
