"""The GPU half of the seed trainer, checked where it can be: the Triton softcapped cross-entropy against
eager (under Triton's CPU interpreter everywhere, on CUDA where there is a GPU), the compile warm-up's
restore, and the model traced by torch.compile without graph breaks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from baseline import train_gpt as tg
from tests.baseline.test_train_gpt import TINY as TRAIN_GPT_TINY
from tests.baseline.test_train_gpt import cpu_runtime

# test_train_gpt's tiny model, on 2 sequences a step: the interpreter runs one kernel program per row
TINY = {**TRAIN_GPT_TINY, "TRAIN_BATCH_TOKENS": "128"}
CPU = cpu_runtime()


def interpreted(check: str, *args: str, out: Path) -> dict:
    """Run `check` (below) in a child Python with TRITON_INTERPRET=1, where the Triton kernels run on CPU
    tensors; it saves its tensors to `out`. A child, because triton reads that variable once, at import."""
    pytest.importorskip("triton", reason="triton is not installed (the `train` extra on Linux x86-64)")
    repo = str(Path(tg.__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    command = [sys.executable, __file__, check, *args, str(out)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return torch.load(out)


def check_kernel(V: str, dtype: str, out: str) -> None:
    assert tg.triton is not None and tg.fused_ce_available(torch.device("cpu"), 30.0)
    torch.manual_seed(0)
    logits = (torch.randn(48, int(V)) * 8).to(getattr(torch, dtype)).requires_grad_()
    targets = torch.randint(0, int(V), (48,))
    targets[0], targets[1] = 0, int(V) - 1  # the first and last column of a row
    weights = torch.rand(48)  # a non-uniform upstream gradient
    fused = tg.softcap_cross_entropy(logits, targets, 30.0, fused=True)
    (g_fused,) = torch.autograd.grad((fused * weights).sum(), logits)
    # above the cap the constant shift allows, the same call must fall back to eager
    over_cap = tg.softcap_cross_entropy(logits.detach(), targets, 60.0, fused=True)
    torch.save(
        {
            "logits": logits.detach(),
            "targets": targets,
            "weights": weights,
            "fused": fused.detach(),
            "g_fused": g_fused,
            "over_cap": over_cap,
        },
        out,
    )


def check_training(dataset_dir: str, out: str) -> None:
    runs = {}
    for fused in ("1", "0"):
        cfg = tg.read_settings({**TINY, "DATA_PATH": dataset_dir, "SEED": "3", "FUSED_CE": fused})
        torch.manual_seed(cfg.seed)
        trainer = tg.Trainer(cfg, CPU, tg.find_shards(cfg.data_path, "train", "test"))
        losses = [trainer.step(step, 0.0).item() for step in range(3)]
        runs[fused] = {"active": trainer.fused, "losses": losses, "state": trainer.model.state_dict()}
    torch.save(runs, out)


# V below one block, not a power of two, and over the 4096 block (the kernel loops over the row)
@pytest.mark.slow
@pytest.mark.parametrize(("V", "dtype"), [(512, "bfloat16"), (1000, "float32"), (5000, "float32")])
def test_triton_kernel_matches_eager_under_the_interpreter(V, dtype, tmp_path):
    got = interpreted("check_kernel", str(V), dtype, out=tmp_path / "kernel.pt")
    logits = got["logits"].requires_grad_()
    eager = tg.softcap_cross_entropy_eager(logits, got["targets"], 30.0)
    (g_eager,) = torch.autograd.grad((eager * got["weights"]).sum(), logits)
    assert got["fused"].dtype == torch.float32 and torch.isfinite(got["fused"]).all()
    assert torch.allclose(got["fused"], eager, rtol=1e-4, atol=1e-4)
    assert got["g_fused"].dtype == getattr(torch, dtype)
    assert torch.allclose(got["g_fused"].float(), g_eager.float(), rtol=2e-2, atol=1e-5)
    # exp(z - cap) would underflow fp32 for z near -cap once cap > 40: eager takes over there
    assert torch.equal(got["over_cap"], tg.softcap_cross_entropy_eager(got["logits"], got["targets"], 60.0))


@pytest.mark.slow
def test_training_steps_with_the_kernel_match_eager_steps(tiny_data, tmp_path):
    """The kernel inside Trainer.step: the same losses and weights as the eager loss, step for step."""
    runs = interpreted("check_training", str(tiny_data.dataset_dir), out=tmp_path / "training.pt")
    fused, eager = runs["1"], runs["0"]
    assert fused["active"] and not eager["active"]
    assert fused["losses"] == pytest.approx(eager["losses"], rel=1e-4)
    # Not equal: Adam and Muon normalize their updates, so fp32 rounding differences in small gradients
    # become lr-sized differences in a few weights (measured: at most 4.3e-4 of a tensor's norm).
    for name, value in eager["state"].items():
        drift = (fused["state"][name] - value).norm() / value.norm()
        assert drift < 2e-3, f"{name} drifted {drift:.2e} from the eager run"


def test_warm_up_restores_weights_optimizer_state_and_data_position(tiny_data):
    """After warm-up steps, training is bit-for-bit the training of a trainer that never warmed up."""
    cfg = tg.read_settings({**TINY, "DATA_PATH": str(tiny_data.dataset_dir), "MATRIX_LR": "0.05"})
    files = tg.find_shards(cfg.data_path, "train", "test")

    def trainer() -> tg.Trainer:
        torch.manual_seed(cfg.seed)
        return tg.Trainer(cfg, CPU, files)

    cold, warmed = trainer(), trainer()
    initial = {k: v.clone() for k, v in warmed.model.state_dict().items()}
    warmed.warm_up(4)
    for name, value in warmed.model.state_dict().items():
        assert torch.equal(value, initial[name]), f"{name} kept a warm-up update"
    assert all(not opt.state for opt in warmed.optimizers), "optimizer state kept warm-up moments"
    cold_losses = [cold.step(step, 0.0).item() for step in range(3)]
    warmed_losses = [warmed.step(step, 0.0).item() for step in range(3)]
    assert warmed_losses == cold_losses
    # and on CPU the trainer itself skips the warm-up: eager has no graphs to build
    assert not trainer().warm_up_compile()


@pytest.mark.slow
def test_model_traces_into_one_graph_for_torch_compile():
    """A graph break would silently cost speed on GPU; the trace itself is device-independent."""
    cfg = tg.read_settings(TINY)
    torch.manual_seed(0)
    model = tg.build_model(cfg, torch.device("cpu"))
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True, dynamic=False)
    x, y = torch.randint(0, 512, (2, 64)), torch.randint(0, 512, (2, 64))
    compiled(x, y).backward()
    traced_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x, y).backward()
    for traced, eager in zip(traced_grads, (p.grad for p in model.parameters()), strict=True):
        assert torch.allclose(traced, eager, atol=1e-6)
    assert compiled(x).shape == (2 * 64, 512)  # the logits path the fused loss uses traces too


# --- on a CUDA GPU ------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(
    ("V", "dtype"), [(1024, torch.bfloat16), (1000, torch.float32), (8192, torch.bfloat16)]
)
def test_triton_kernel_matches_eager_on_gpu(V, dtype):
    if tg.triton is None:
        pytest.skip("triton is not installed")
    torch.manual_seed(0)
    logits = (torch.randn(4096, V, device="cuda") * 8).to(dtype).requires_grad_()
    targets = torch.randint(0, V, (4096,), device="cuda")
    weights = torch.rand(4096, device="cuda")
    fused = tg.softcap_cross_entropy(logits, targets, 30.0, fused=True)
    (g_fused,) = torch.autograd.grad((fused * weights).sum(), logits)
    eager = tg.softcap_cross_entropy_eager(logits, targets, 30.0)
    (g_eager,) = torch.autograd.grad((eager * weights).sum(), logits)
    assert torch.allclose(fused, eager, rtol=1e-4, atol=1e-4)
    assert g_fused.dtype == dtype
    assert torch.allclose(g_fused.float(), g_eager.float(), rtol=2e-2, atol=1e-5)


if __name__ == "__main__":  # the child of interpreted(): python test_fused_ce.py CHECK ARGS... OUT
    {"check_kernel": check_kernel, "check_training": check_training}[sys.argv[1]](*sys.argv[2:])
