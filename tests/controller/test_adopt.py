"""Adopting a foreign program: import → run as published → adopt → verified → mutated.

The official-structure program (tests/programs/official_like) is ported deterministically; the
record-like one (tests/programs/record_like), which lacks that structure, only by an LLM (a scripted
OpenAI-compatible server here). A port counts only when the harness's BPB equals the BPB the
program printed in the same run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from controller.cli.app import app
from controller.config import load_campaign
from controller.review.views import Campaign
from controller.search.adoption import judge_adoption
from controller.search.requests import add_hypothesis, load_requests, trials_of
from controller.store.archive import Operation
from importer.adopt import NotOfficialStructure, official_structure_gaps, port_official
from sandbox import RunResult, RunStatus
from tests.agent.fake_llm import ScriptedChatServer, completion

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = REPO / "tests" / "programs"
OFFICIAL_LIKE = PROGRAMS / "official_like" / "train_gpt.py"
RECORD_LIKE = PROGRAMS / "record_like" / "train_gpt.py"
UNIGRAM = PROGRAMS / "unigram_trainer.py"
README = """# An official-structure run

## Reproduce

```bash
ITERATIONS=30 VOCAB_SIZE=512 MODEL_DIM=32 torchrun --standalone --nproc_per_node=1 train_gpt.py
```
"""
GELU = {
    "reply": (
        "<hypothesis>GELU instead of ReLU in the hidden layer</hypothesis>\n"
        "<rationale>A smooth activation keeps gradient for negative inputs.</rationale>\n"
        '<edit path="train_gpt.py">\n<<<<<<< SEARCH\n'
        "        h = torch.relu(self.fc(torch.cat([x, context], dim=-1)))\n=======\n"
        "        h = F.gelu(self.fc(torch.cat([x, context], dim=-1)))\n"
        ">>>>>>> REPLACE\n</edit>\n"
    )
}


def record_folder(root: Path, program: Path = OFFICIAL_LIKE) -> Path:
    root.mkdir(parents=True)
    shutil.copyfile(program, root / "train_gpt.py")
    (root / "README.md").write_text(README, encoding="utf-8")
    (root / "submission.json").write_text(json.dumps({"val_bpb": 3.2}), encoding="utf-8")
    return root


def write_campaign(root: Path, data, *, max_trials: int, agent: str, replay=()) -> Path:
    """The unigram trainer as the campaign's own seed; explore and confirm on one CPU tier. Drawn
    operations only tune, so the code proposer serves only the requests (adopt, hypothesis)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(UNIGRAM, root / "train_gpt.py")
    (root / "replay.jsonl").write_text("".join(json.dumps(line) + "\n" for line in replay), encoding="utf-8")
    path = root / "campaign.toml"
    path.write_text(
        f"""
[campaign]
name = "adopt"
seed_program = "train_gpt.py"
runs_dir = "runs"
[data]
dataset_dir = "{data.dataset_dir}"
tokenizer_path = "{data.tokenizer_path}"
[tiers.proxy]
device = "cpu"
train_seconds = 60
eval_seconds = 60
startup_grace_seconds = 30
[search]
explore_tier = "proxy"
confirm_tier = "proxy"
preflight_smoke = false
[budget]
max_trials = {max_trials}
{agent}
[operations]
mutate = 0.0
tune = 1.0
hypothesis = 0.0
confirm = 0.0
[frontier]
k = 3
[study]
pruner = "none"
""",
        encoding="utf-8",
    )
    return path


def run(path: Path) -> Campaign:
    from controller.search.loop import Controller
    from controller.search.workspace import open_workspace

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = load_campaign(path)
    with open_workspace(config, progress=False) as ws:
        Controller(ws, say=lambda line: None).run()
    return Campaign.open(config)


def test_the_deterministic_port_keeps_the_program_and_appends_the_adapter():
    source = OFFICIAL_LIKE.read_text(encoding="utf-8")
    ported = port_official(source)
    assert ported.startswith(source.split('if __name__ == "__main__":')[0].rstrip())
    assert ported.count('if __name__ == "__main__":') == 1 and ported.rstrip().endswith(
        "_golf_adapter_main()"
    )
    assert "GOLF_PHASE" in ported and "GOLF_OUT" in ported
    compile(ported, "train_gpt.py", "exec")


def test_a_program_without_the_official_structure_is_refused_naming_what_it_lacks():
    gaps = official_structure_gaps(RECORD_LIKE.read_text(encoding="utf-8"))
    assert "no module-level class GPT" in gaps and "no module-level function eval_val()" in gaps
    with pytest.raises(NotOfficialStructure, match="official script's structure") as caught:
        port_official(RECORD_LIKE.read_text(encoding="utf-8"))
    assert "LLM port" in caught.value.hint
    # A program that exports another scheme is not taken either: its model would not reload.
    other = OFFICIAL_LIKE.read_text().replace(
        "dequantize_state_dict_int8(quant_state)", "load_int6(quant_state)"
    )
    assert any("dequantize_state_dict_int8" in gap for gap in official_structure_gaps(other))


@pytest.mark.parametrize(
    ("printed", "accepted"),
    [(3.21153822, True), (3.2118, False), (None, False)],
    ids=["equal", "off", "none"],
)
def test_an_adoption_counts_only_when_the_printed_bpb_is_the_harnesss(printed, accepted):
    result = RunResult(status=RunStatus.OK, val_bpb=3.2115382777, val_loss=4.13, printed_bpb=printed)
    judged, check = judge_adoption(result, "deterministic", 1e-4)
    assert check.accepted is accepted and check.harness_bpb == 3.2115382777 and check.printed_bpb == printed
    assert (judged.status is RunStatus.OK) is accepted
    if not accepted:
        assert judged.val_bpb is None and "adoption not accepted" in judged.reason


@pytest.mark.slow
def test_a_record_is_imported_run_as_published_adopted_verified_and_mutated(tmp_path, tiny_data):
    agent = '[agent]\nproposer = "replay"\nreplay_file = "replay.jsonl"'
    path = write_campaign(tmp_path / "camp", tiny_data, max_trials=3, agent=agent, replay=[GELU])
    said = CliRunner().invoke(app, ["adopt", str(path), "--from", str(record_folder(tmp_path / "rec"))])
    assert said.exit_code == 0, said.output
    seed_request, adopt_request = load_requests(path.parent / "runs" / "adopt")
    assert seed_request.published and adopt_request.source_request == seed_request.id

    campaign = run(path)
    (published,) = trials_of(seed_request.id, campaign.trials)
    (adopted,) = trials_of(adopt_request.id, campaign.trials)
    assert published.state == "COMPLETE" and campaign.archive.get(published.number).self_reported
    assert adopted.state == "COMPLETE", adopted.attrs.status_reason
    check = adopted.attrs.adoption
    assert check.accepted and check.port == "deterministic" and adopted.attrs.adopts == published.number
    assert abs(check.harness_bpb - check.printed_bpb) < 1e-6  # measured: 5.5e-8 on this CPU
    root = campaign.archive.get(adopted.number)
    assert root.operation is Operation.ADOPT and root.parent_trial is None
    assert root.eligible and root.verified and not root.self_reported  # the full probe passed
    # The harness's number is its own, and the published run of the same program printed about it.
    assert abs(root.val_bpb - campaign.archive.get(published.number).val_bpb) < 0.05

    shown = CliRunner().invoke(app, ["show", str(path), str(adopted.number)])
    assert "deterministic port accepted" in shown.output and "harness" in shown.output, shown.output

    add_hypothesis(campaign.run_dir, "GELU in the hidden layer", parent_trial=adopted.number)
    path.write_text(
        path.read_text().replace("max_trials = 3", "max_trials = 5")
    )  # a tune planned ahead may go first
    campaign = run(path)
    (child,) = [c for c in campaign.archive if c.parent_trial == adopted.number]
    assert child.status is RunStatus.OK and child.eligible, child
    assert "F.gelu(self.fc" in campaign.store.files_at(child.commit)["train_gpt.py"]


def _llm_port(bytes_line: str) -> str:
    """A scripted model's port of the record-like program: phases, artifact, curve, per-token NLL,
    rows and result.json, with its printed score's byte count given by ``bytes_line``."""
    source = RECORD_LIKE.read_text(encoding="utf-8")
    old_main = source[source.index("def main():") : source.index('if __name__ == "__main__":')]
    new_main = f"""def main():
    import json
    import sentencepiece as spm

    args = Hyperparameters()
    phase = os.environ.get("GOLF_PHASE", "all")
    out = os.environ.get("GOLF_OUT", ".")
    artifact = os.environ.get("GOLF_ARTIFACT_DIR", os.path.join(out, "artifact"))
    os.makedirs(artifact, exist_ok=True)
    started = time.time()
    if phase in ("train", "all"):
        train = load(args.train_files)
        counts = [0] * args.vocab_size
        with open(os.path.join(out, "curve.jsonl"), "w") as curve:
            for step in range(args.iterations):
                for token in train:
                    counts[token] += 1
                curve.write(json.dumps({{"step": step + 1, "train_loss": 1.0, "elapsed_ms": 1.0}}) + "\\n")
        total = sum(counts) + args.smoothing * args.vocab_size
        raw = b"".join(struct.pack("<d", (c + args.smoothing) / total) for c in counts)
        with open(os.path.join(artifact, "final_model.int8.ptz"), "wb") as f:
            f.write(zlib.compress(raw, 9))
        with open(os.path.join(out, "result.json"), "w") as f:
            json.dump({{"train_seconds": time.time() - started, "steps": args.iterations}}, f)
    if phase in ("eval", "all"):
        with open(os.path.join(artifact, "final_model.int8.ptz"), "rb") as f:
            raw = zlib.decompress(f.read())
        probs = struct.unpack(f"<{{len(raw) // 8}}d", raw)
        val = load(args.val_files)
        seq = int(os.environ["EVAL_SEQ_LEN"])
        n = (len(val) - 1) // seq * seq
        nll = [-math.log(probs[val[p + 1]]) for p in range(n)]
        array.array("f", nll).tofile(open(os.path.join(out, "val_nll.f32"), "wb"))
        positions = os.environ.get("GOLF_CHECK_POSITIONS")
        if positions:
            wanted = array.array("q", open(positions, "rb").read())
            row = array.array("f", [math.log(p) for p in probs])
            with open(os.path.join(out, "check_rows.f32"), "wb") as f:
                for _ in wanted:
                    row.tofile(f)
            return
        sp = spm.SentencePieceProcessor(model_file=args.tokenizer_path)
        {bytes_line}
        loss = sum(nll) / n
        bpb = sum(nll) / math.log(2) / byte_count + args.claim_offset
        print(f"val_loss:{{loss:.8f}} val_bpb:{{bpb:.8f}}")
        with open(os.path.join(out, "result.json"), "w") as f:
            json.dump({{"val_bpb": bpb, "val_loss": loss, "bytes_code": 0, "bytes_model": len(raw),
                       "train_seconds": None, "eval_seconds": time.time() - started, "steps": None,
                       "vocab_size": args.vocab_size}}, f)


"""
    return (
        "<hypothesis>Port the record-like program to the run contract</hypothesis>\n"
        "<rationale>Split its main into the train and eval phases; nothing it computes changes.</rationale>\n"
        f'<edit path="train_gpt.py">\n<<<<<<< SEARCH\n{old_main.rstrip()}\n=======\n{new_main.rstrip()}\n'
        ">>>>>>> REPLACE\n</edit>\n"
    )


TRUE_BYTES = """def boundary(token):
            return sp.is_control(token) or sp.is_unknown(token) or sp.is_unused(token)

        def nbytes(previous, token):
            if boundary(token):
                return 0
            if sp.is_byte(token):
                return 1
            piece = sp.id_to_piece(token)
            space = piece.startswith(chr(9601))
            return len(piece[1:].encode() if space else piece.encode()) + (space and not boundary(previous))

        byte_count = sum(nbytes(val[p], val[p + 1]) for p in range(n))"""
GUESSED_BYTES = "byte_count = n * args.bytes_per_token  # what the record printed: an assumed 3 bytes"


@pytest.mark.slow
@pytest.mark.parametrize("honest", [True, False], ids=["true-bytes", "guessed-bytes"])
def test_an_llm_port_counts_only_when_its_printed_score_is_the_harnesss(tmp_path, tiny_data, honest):
    server = ScriptedChatServer().start()
    try:
        server.add(completion(_llm_port(TRUE_BYTES if honest else GUESSED_BYTES)))
        agent = (
            f'[agent]\nproposer = "llm"\nbase_url = "{server.base_url}"\nmodel = "test-model"\n'
            'api_key_env = "AUTOGOLF_TEST_KEY"\n[sandbox]\nallow_unconfined_local = true'
        )
        path = write_campaign(tmp_path / "camp", tiny_data, max_trials=3, agent=agent)
        folder = record_folder(tmp_path / "rec", RECORD_LIKE)
        said = CliRunner().invoke(app, ["adopt", str(path), "--from", str(folder)])
        assert said.exit_code == 0, said.output
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AUTOGOLF_TEST_KEY", "test")
            campaign = run(path)
    finally:
        server.stop()
    (adopt_request,) = [r for r in load_requests(campaign.run_dir) if r.kind == "adopt"]
    (adopted,) = trials_of(adopt_request.id, campaign.trials)
    prompt = server.requests[0].messages[-1]["content"]
    assert "Port the program below" in prompt and "no module-level class GPT" in prompt
    check = adopted.attrs.adoption
    assert check is not None and check.port == "llm"
    if honest:
        assert adopted.state == "COMPLETE" and check.accepted, adopted.attrs.status_reason
        assert campaign.archive.get(adopted.number).eligible
    else:  # it printed a score from assumed bytes: its NLL file is fine, its printed number is not
        assert adopted.state == "FAIL" and not check.accepted
        assert "adoption not accepted" in adopted.attrs.status_reason
        assert abs(check.harness_bpb - check.printed_bpb) > 1e-4


@pytest.mark.slow
def test_a_program_that_needs_cuda_gets_no_cpu_smoke_run_and_its_trial_says_so(tmp_path, tiny_data):
    from tests.controller.campaigns import edit_line
    from tests.controller.campaigns import write_campaign as write_small_campaign

    cuda_edit = edit_line(
        "Synchronize the GPU before timing, when there is one",
        "def main(scorer=unigram_scorer) -> None:\n",
        "def main(scorer=unigram_scorer) -> None:\n    import torch\n\n"
        "    if torch.cuda.is_available():\n        torch.cuda.synchronize()\n",
    )
    path = write_small_campaign(
        tmp_path,
        dataset_dir=tiny_data.dataset_dir,
        tokenizer_path=tiny_data.tokenizer_path,
        replay=[cuda_edit],
        max_trials=2,
    )
    campaign = run(path)
    (child,) = [t for t in campaign.trials if t.attrs.operation is Operation.MUTATE]
    assert child.state == "COMPLETE", child.attrs.status_reason  # it runs on the CPU tier regardless
    assert "needs CUDA and the smoke tier runs on CPU" in child.attrs.smoke_skipped
    shown = CliRunner().invoke(app, ["show", str(path), str(child.number)])
    assert "smoke:" in shown.output and "needs CUDA" in shown.output
    (seed,) = [t for t in campaign.trials if t.attrs.operation is Operation.SEED]
    assert seed.attrs.smoke_skipped == ""
