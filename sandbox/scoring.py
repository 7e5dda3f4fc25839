"""Trusted scoring: the harness's own byte accounting and bits-per-byte.

The candidate's printed score is never used. BPB is recomputed here from the per-token NLL file the
eval phase wrote and the validation tokens, with per-token byte counts taken from the tokenizer the
same way the challenge's reference script builds its lookup tables (CHALLENGE.md, "How BPB is
computed"): a target's bytes are the UTF-8 length of its piece without a leading "▁", byte-fallback
pieces count 1, control/unknown/unused pieces 0, plus 1 for the leading space unless the previous
token is a control (boundary) token. The two classic accounting bugs of public entries -- counting the
space twice, or ``<0xNN>`` pieces as 3 bytes -- are exactly what these tables pin down.

Shards are read by ``sandbox.shards``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sandbox.shards import read_header, read_shard_tokens

_SCORE_CHUNK = 1 << 22  # tokens per chunk: keeps scoring 62M validation tokens within ~100 MB


@dataclass(frozen=True)
class TokenBytes:
    """Per-token-id byte accounting tables, indexed by token id (length = tokenizer vocab size)."""

    base_bytes: np.ndarray  # int16: UTF-8 bytes of the piece without its leading "▁"
    has_leading_space: np.ndarray  # bool: the piece starts with "▁"
    is_boundary: np.ndarray  # bool: control, unknown or unused piece (counts 0 bytes, eats no space)

    @property
    def vocab_size(self) -> int:
        return int(self.base_bytes.size)

    @classmethod
    def from_tokenizer(cls, path: Path) -> TokenBytes:
        """Build the tables from a SentencePiece model file."""
        import sentencepiece as spm  # imported here: scoring is the only user

        sp = spm.SentencePieceProcessor(model_file=str(path))
        vocab = int(sp.vocab_size())
        base = np.zeros(vocab, dtype=np.int16)
        space = np.zeros(vocab, dtype=np.bool_)
        boundary = np.ones(vocab, dtype=np.bool_)
        for token_id in range(vocab):
            if sp.is_control(token_id) or sp.is_unknown(token_id) or sp.is_unused(token_id):
                continue
            boundary[token_id] = False
            if sp.is_byte(token_id):  # byte-fallback piece "<0xNN>" stands for exactly one byte
                base[token_id] = 1
                continue
            piece = sp.id_to_piece(token_id)
            if piece.startswith("\u2581"):
                space[token_id] = True
                piece = piece[1:]
            base[token_id] = len(piece.encode("utf-8"))
        return cls(base, space, boundary)

    def target_bytes(self, targets: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """Bytes of each target token given the token before it (int32, same shape)."""
        count = self.base_bytes[targets].astype(np.int32)
        count += self.has_leading_space[targets] & ~self.is_boundary[previous]
        return count


def score(
    nll: np.ndarray, val_tokens: np.ndarray, token_bytes: TokenBytes, target_bytes: np.ndarray | None = None
) -> tuple[float, float]:
    """``(val_bpb, val_loss)`` for NLLs (nats) of targets ``val[1..n]``, ``n = len(nll)``.

    ``target_bytes`` is a dataset's byte sidecar (one count per validation position, see
    :func:`read_byte_sidecar`): the bytes are then its counts of the targets, not the tokenizer's.

    Raises ``ValueError`` when the NLL array is longer than the validation stream allows, a token id is
    outside the tokenizer's vocabulary, or the covered text has zero bytes.
    """
    n = int(nll.size)
    if n == 0 or n > val_tokens.size - 1:
        raise ValueError(
            f"{n} NLL values for {val_tokens.size} validation tokens (need 1..{val_tokens.size - 1})"
        )
    if int(val_tokens[: n + 1].max()) >= token_bytes.vocab_size:
        raise ValueError(f"validation tokens exceed the tokenizer's vocabulary of {token_bytes.vocab_size}")
    nll_sum = 0.0
    byte_sum = 0
    for start in range(0, n, _SCORE_CHUNK):
        stop = min(start + _SCORE_CHUNK, n)
        targets = val_tokens[start + 1 : stop + 1].astype(np.int64)
        previous = val_tokens[start:stop].astype(np.int64)
        if target_bytes is None:
            byte_sum += int(token_bytes.target_bytes(targets, previous).sum(dtype=np.int64))
        else:
            byte_sum += int(target_bytes[start + 1 : stop + 1].sum(dtype=np.int64))
        nll_sum += float(np.asarray(nll[start:stop], dtype=np.float64).sum())
    if byte_sum <= 0:
        raise ValueError("the scored validation tokens cover zero bytes of text")
    val_loss = nll_sum / n
    val_bpb = nll_sum / math.log(2) / byte_sum
    return val_bpb, val_loss


# A sidecar whose bytes differ this much from the tokenizer's is for another stream, not a transform
# of this one (CaseOps' case tokens move the count by a few percent).
SIDECAR_RATIO_BOUNDS = (0.5, 2.0)


def read_byte_sidecar(
    paths: list[Path], val_paths: list[Path], val_tokens: np.ndarray, token_bytes: TokenBytes
) -> np.ndarray:
    """The dataset's per-position byte counts, checked against its validation shards: one sidecar
    shard per val shard with the same token count, and a total within :data:`SIDECAR_RATIO_BOUNDS`
    of what the tokenizer's tables count for the same stream. Raises ``ValueError`` naming the file."""
    if len(paths) != len(val_paths):
        raise ValueError(f"{len(paths)} byte sidecar shards for {len(val_paths)} validation shards")
    for sidecar, val in zip(paths, val_paths, strict=True):
        if read_header(sidecar) != read_header(val):
            raise ValueError(
                f"{sidecar.name} holds {read_header(sidecar)} counts but {val.name} holds {read_header(val)} tokens"
            )
    counts = np.concatenate([read_shard_tokens(p) for p in paths])
    table = int(
        token_bytes.target_bytes(val_tokens[1:].astype(np.int64), val_tokens[:-1].astype(np.int64)).sum()
    )
    side = int(counts[1:].sum(dtype=np.int64))
    low, high = SIDECAR_RATIO_BOUNDS
    if table > 0 and not low <= side / table <= high:
        raise ValueError(
            f"the byte sidecar counts {side:,} bytes where the tokenizer counts {table:,} "
            f"(ratio {side / table:.2f}, outside {low}-{high}): it belongs to another stream"
        )
    return counts
