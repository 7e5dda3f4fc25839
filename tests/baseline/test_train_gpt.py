"""The seed trainer's parts, in-process: knob table, shards, byte accounting, windows, model, schedule."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch

from baseline import train_gpt as tg
from datatools.shards import read_shard, write_shard
from sandbox.knobs import parse_knob_table

TRAIN_GPT = Path(tg.__file__)

TINY = {
    "VOCAB_SIZE": "512",
    "NUM_LAYERS": "2",
    "MODEL_DIM": "64",
    "NUM_HEADS": "2",
    "NUM_KV_HEADS": "1",
    "TRAIN_SEQ_LEN": "64",
    "EVAL_SEQ_LEN": "64",
    "TRAIN_BATCH_TOKENS": "1024",
}


def tiny_cfg(**overrides: str):
    return tg.read_settings({**TINY, **overrides})


def cpu_runtime() -> tg.Runtime:
    return tg.Runtime(rank=0, world=1, local_rank=0, device=torch.device("cpu"))


# --- knob table ---------------------------------------------------------------------------------


def test_knob_table_parses_statically_and_matches_what_the_program_reads():
    knobs = parse_knob_table(TRAIN_GPT.read_text(), filename=str(TRAIN_GPT))
    by_name = {k.name: k for k in knobs}
    assert [k.name for k in knobs] == [k.name for k in tg.KNOBS]
    defaults = tg.read_settings({})
    for knob in knobs:
        assert getattr(defaults, knob.name.lower()) == knob.default, knob.name
    # the official baseline's shape and settings are the defaults
    assert (defaults.num_layers, defaults.model_dim, defaults.num_heads, defaults.num_kv_heads) == (
        9,
        512,
        8,
        4,
    )
    assert (defaults.mlp_mult, defaults.vocab_size, defaults.train_seq_len) == (2, 1024, 1024)
    assert (defaults.train_batch_tokens, defaults.max_wallclock_seconds) == (524288, 600.0)
    assert (defaults.logit_softcap, defaults.quant_bits_matrix, defaults.quant_bits_embed) == (30.0, 8, 8)
    # tunable settings are searchable, fixed ones are not
    assert by_name["MATRIX_LR"].searchable and by_name["MATRIX_LR"].log
    assert by_name["COMPRESSOR"].choices == ("auto", "zlib", "zstd", "lzma", "brotli")
    for fixed in (
        "DATA_PATH",
        "TOKENIZER_PATH",
        "SEED",
        "MAX_WALLCLOCK_SECONDS",
        "ITERATIONS",
        "VAL_BATCH_SIZE",
    ):
        assert not by_name[fixed].searchable, fixed


def test_settings_are_read_from_the_environment_with_their_types():
    cfg = tg.read_settings({"NUM_LAYERS": "11", "MATRIX_LR": "0.02", "COMPILE": "0", "ITERATIONS": "1e3"})
    assert cfg.num_layers == 11 and cfg.matrix_lr == 0.02 and cfg.compile is False and cfg.iterations == 1000


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"NUM_LAYERS": "nine"}, "NUM_LAYERS"),
        ({"COMPRESSOR": "gzip"}, "COMPRESSOR"),
        ({"COMPILE": "maybe"}, "COMPILE"),
        ({"MODEL_DIM": "500"}, "MODEL_DIM"),
        ({"NUM_KV_HEADS": "3"}, "NUM_KV_HEADS"),
        ({"QUANT_BITS_MATRIX": "12"}, "QUANT_BITS_MATRIX"),
    ],
)
def test_bad_settings_fail_naming_the_knob(env, named):
    with pytest.raises(tg.SettingError, match=named):
        tg.read_settings(env)


# --- shards -------------------------------------------------------------------------------------


def _shard_bytes(tokens: np.ndarray, magic=tg.SHARD_MAGIC, version=tg.SHARD_VERSION, count=None) -> bytes:
    header = np.zeros(256, dtype="<i4")
    header[:3] = magic, version, tokens.size if count is None else count
    return header.tobytes() + tokens.astype("<u2").tobytes()


def test_shard_reader_reads_what_the_harness_writes(tmp_path):
    tokens = np.arange(1000, dtype=np.uint16) * 7
    write_shard(tmp_path / "fineweb_val_000000.bin", tokens)
    assert np.array_equal(tg.read_shard(tmp_path / "fineweb_val_000000.bin"), tokens)
    assert np.array_equal(read_shard(tmp_path / "fineweb_val_000000.bin"), tokens)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (_shard_bytes(np.arange(10), magic=1234), "bad magic 1234"),
        (_shard_bytes(np.arange(10), version=2), "unsupported shard version 2"),
        (_shard_bytes(np.arange(10), count=11), "header says 11 tokens"),
        (_shard_bytes(np.arange(10))[:-1], "header says 10 tokens"),
        (b"\x00" * 100, "shorter than the 1024-byte shard header"),
    ],
)
def test_bad_shard_headers_fail_naming_the_file(tmp_path, blob, message):
    path = tmp_path / "fineweb_train_000003.bin"
    path.write_bytes(blob)
    with pytest.raises(tg.SettingError) as info:
        tg.read_shard(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_missing_split_names_the_pattern_and_the_data_path(tmp_path):
    with pytest.raises(tg.SettingError) as info:
        tg.find_shards(str(tmp_path), "train", "train")
    assert "fineweb_train_*.bin" in str(info.value) and f"DATA_PATH={tmp_path}" in str(info.value)


def test_train_stream_wraps_around_the_shards(tmp_path):
    write_shard(tmp_path / "fineweb_train_000000.bin", np.arange(0, 5, dtype=np.uint16))
    write_shard(tmp_path / "fineweb_train_000001.bin", np.arange(5, 8, dtype=np.uint16))
    stream = tg.TokenStream(tg.find_shards(str(tmp_path), "train", "train"), vocab_size=16)
    assert stream.take(6).tolist() == [0, 1, 2, 3, 4, 5]
    assert stream.take(6).tolist() == [6, 7, 0, 1, 2, 3]


def test_train_stream_rejects_tokens_outside_the_vocabulary(tmp_path):
    write_shard(tmp_path / "fineweb_train_000000.bin", np.array([1, 2, 600], dtype=np.uint16))
    stream = tg.TokenStream([tmp_path / "fineweb_train_000000.bin"], vocab_size=512)
    with pytest.raises(tg.SettingError, match="VOCAB_SIZE=512"):
        stream.take(2)


# --- byte accounting ----------------------------------------------------------------------------


def _documents(tokens: np.ndarray) -> list[np.ndarray]:
    """Split a token stream at BOS (id 1): each document is BOS followed by its tokens."""
    bos = np.flatnonzero(tokens == 1)
    return [tokens[a:b] for a, b in zip(bos, [*bos[1:], tokens.size], strict=True)]


def test_bpb_byte_count_equals_utf8_length_of_each_decoded_validation_document(tiny_data):
    sp = spm.SentencePieceProcessor(model_file=str(tiny_data.tokenizer_path))
    tables = tg.build_byte_tables(sp, 512)
    val = tg.read_shard(next(Path(tiny_data.dataset_dir).glob("fineweb_val_*.bin")))
    docs = _documents(val)
    assert len(docs) == tiny_data.val_docs
    for doc in docs:
        counted = int(tables.target_bytes(doc[:-1], doc[1:]).sum())
        assert counted == len(sp.decode(doc[1:].tolist()).encode("utf-8"))
    # over the whole stream too (the next BOS is a control token and counts 0 bytes)
    total = int(tables.target_bytes(val[:-1], val[1:]).sum())
    assert total == sum(len(sp.decode(d[1:].tolist()).encode("utf-8")) for d in docs)


def test_byte_fallback_pieces_count_one_byte_each(tiny_data):
    sp = spm.SentencePieceProcessor(model_file=str(tiny_data.tokenizer_path))
    tables = tg.build_byte_tables(sp, 512)
    text = "na\u00efve caf\u00e9 \u2014 \u6771\u4eac \U0001f642 and so on"
    ids = np.array([1, *sp.encode(text)])
    assert any(sp.is_byte(int(i)) for i in ids), "the text should need byte fallback"
    assert int(tables.target_bytes(ids[:-1], ids[1:]).sum()) == len(sp.decode(ids[1:].tolist()).encode())
    # a leading-space piece right after BOS does not count its space
    space_id = next(i for i in range(sp.get_piece_size()) if sp.id_to_piece(i).startswith("\u2581"))
    after_bos = tables.target_bytes(np.array([1]), np.array([space_id]))[0]
    after_word = tables.target_bytes(np.array([space_id]), np.array([space_id]))[0]
    assert after_word == after_bos + 1


# --- evaluation windows -------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "S", "stride"), [(640, 64, 0), (640, 64, 16), (640, 64, 48), (192, 64, 40)])
def test_windows_score_every_position_exactly_once(n, S, stride):
    starts, first = tg.plan_windows(n, S, stride)
    scored = np.concatenate([np.arange(s + f, s + S) for s, f in zip(starts, first, strict=True)])
    assert np.array_equal(scored, np.arange(n))
    assert starts.max() + S == n
    if 0 < stride < S:  # every position after the first window sees at least S - stride tokens
        assert (first[1:] >= S - stride).all()


def _trained_free_model(cfg) -> tg.GPT:
    torch.manual_seed(0)
    model = tg.build_model(cfg, torch.device("cpu"))
    with torch.no_grad():  # zero-initialized projections would make every position identical
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def test_sliding_window_covers_the_same_targets_and_matches_plain_eval_in_the_first_window(tiny_data):
    cfg = tiny_cfg(TOKENIZER_PATH=str(tiny_data.tokenizer_path))
    model = _trained_free_model(cfg)
    val = tg.read_shard(next(Path(tiny_data.dataset_dir).glob("fineweb_val_*.bin")))[:2000]
    tables = tg.build_byte_tables(spm.SentencePieceProcessor(model_file=str(tiny_data.tokenizer_path)), 512)
    plain = tg.evaluate(model, val, cfg, cpu_runtime(), tables)
    slide = tg.evaluate(model, val, tiny_cfg(EVAL_STRIDE="16"), cpu_runtime(), tables)
    n = ((val.size - 1) // 64) * 64
    assert plain.nll.shape == slide.nll.shape == (n,)
    assert torch.allclose(plain.nll[:64], slide.nll[:64], atol=1e-5)
    assert not torch.allclose(plain.nll[64:], slide.nll[64:], atol=1e-3)  # more context changes scores
    assert plain.scored_bytes == slide.scored_bytes
    assert plain.val_bpb == pytest.approx(plain.nll.double().sum().item() / math.log(2) / plain.scored_bytes)


def test_check_rows_are_normalized_and_agree_with_the_nll(tiny_data):
    cfg = tiny_cfg(EVAL_STRIDE="16")
    model = _trained_free_model(cfg)
    val = tg.read_shard(next(Path(tiny_data.dataset_dir).glob("fineweb_val_*.bin")))[:1000]
    tables = tg.build_byte_tables(spm.SentencePieceProcessor(model_file=str(tiny_data.tokenizer_path)), 512)
    positions = np.array([0, 63, 64, 500, 17, 63, 959])
    result = tg.evaluate(model, val, cfg, cpu_runtime(), tables, positions)
    assert result.rows.shape == (len(positions), 512)
    assert torch.allclose(torch.logsumexp(result.rows, dim=1), torch.zeros(len(positions)), atol=1e-5)
    targets = torch.from_numpy(val[positions + 1].astype(np.int64))
    picked = -result.rows[torch.arange(len(positions)), targets]
    assert torch.allclose(picked, result.nll[positions], rtol=1e-5, atol=1e-6)


def test_check_positions_outside_the_scored_range_are_rejected(tmp_path):
    path = tmp_path / "positions.i64"
    np.array([3, 100], dtype="<i8").tofile(path)
    with pytest.raises(tg.SettingError, match="position 100 is outside 0..99"):
        tg.read_check_positions(str(path), 100)


def test_validation_too_short_for_one_sequence_names_eval_seq_len():
    assert tg.scored_targets(np.zeros(129, dtype=np.uint16), 64) == 128
    with pytest.raises(tg.SettingError, match="has 64 tokens, too few for EVAL_SEQ_LEN=64"):
        tg.scored_targets(np.zeros(64, dtype=np.uint16), 64)


# --- model, loss, optimizer, schedule ------------------------------------------------------------


def test_model_has_the_baseline_parameter_count():
    model = tg.GPT(tg.read_settings({}))
    matrices = sum(m.weight.numel() for m in model.blocks.modules() if isinstance(m, torch.nn.Linear))
    assert matrices + model.tok_emb.weight.numel() == 17_039_360  # 9 x 512 + tied 1024 x 512 (~17.06M)


def test_model_is_causal():
    cfg = tiny_cfg()
    model = _trained_free_model(cfg)
    ids = torch.randint(0, 512, (1, 32))
    changed = ids.clone()
    changed[0, 20] = (ids[0, 20] + 1) % 512
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.allclose(a[:20], b[:20], atol=1e-6) and not torch.allclose(a[20:], b[20:])


def test_softcap_bounds_logits_and_dispatch_falls_back_to_eager_on_cpu():
    logits = torch.randn(16, 512) * 100
    targets = torch.randint(0, 512, (16,))
    assert tg.softcap(logits, 30.0).abs().max() <= 30.0
    assert not tg.fused_ce_available(torch.device("cpu"), 30.0)
    eager = torch.nn.functional.cross_entropy(30.0 * torch.tanh(logits / 30.0), targets, reduction="none")
    assert torch.allclose(tg.softcap_cross_entropy(logits, targets, 30.0), eager)


def test_orthogonalize_pushes_singular_values_towards_one():
    G = torch.randn(64, 160) @ torch.diag(torch.logspace(-2, 1, 160))
    singular = torch.linalg.svdvals(tg.orthogonalize(G, 5))
    assert singular.min() > 0.5 and singular.max() < 1.3
    assert tg.orthogonalize(G.T, 5).shape == (160, 64)


def test_training_steps_reduce_the_loss_on_repeated_data(tmp_path):
    tokens = np.tile(np.random.default_rng(0).integers(2, 512, 300, dtype=np.uint16), 20)
    write_shard(tmp_path / "fineweb_train_000000.bin", tokens)
    cfg = tiny_cfg(DATA_PATH=str(tmp_path), WARMDOWN_ITERS="0")
    torch.manual_seed(0)
    trainer = tg.Trainer(cfg, cpu_runtime(), tg.find_shards(str(tmp_path), "train", "train"))
    losses = [trainer.step(i, 0.0).item() for i in range(25)]
    assert losses[0] == pytest.approx(math.log(512), abs=0.3)  # zero-init output: near uniform
    assert losses[-1] < losses[0] - 1.0


def test_batch_that_does_not_split_into_sequences_is_rejected():
    with pytest.raises(tg.SettingError, match="TRAIN_BATCH_TOKENS=1000"):
        tg.grad_accum_steps(tiny_cfg(TRAIN_BATCH_TOKENS="1000"), cpu_runtime())


def test_warmdown_is_keyed_on_the_wall_clock_cap():
    cfg = tiny_cfg(MAX_WALLCLOCK_SECONDS="100", WARMDOWN_ITERS="100", ITERATIONS="100000")
    assert tg.lr_scale(0, 0.0, cfg) == 1.0
    # 100 steps in 10 s: 100 ms/step, so the warmdown spans the last 10 s of the cap
    assert tg.lr_scale(100, 10_000.0, cfg) == 1.0
    assert tg.lr_scale(950, 95_000.0, cfg) == pytest.approx(0.5)
    assert tg.lr_scale(1000, 100_000.0, cfg) == 0.0


def test_without_a_cap_warmdown_is_keyed_on_iterations_and_warmup_ramps():
    cfg = tiny_cfg(MAX_WALLCLOCK_SECONDS="0", WARMDOWN_ITERS="10", ITERATIONS="100", LR_WARMUP_STEPS="4")
    assert tg.lr_scale(0, 0.0, cfg) == pytest.approx(0.25)
    assert tg.lr_scale(50, 1e9, cfg) == 1.0
    assert tg.lr_scale(95, 0.0, cfg) == pytest.approx(0.5)
