"""Campaign config: the shipped campaigns load, and every mistake names its key and a fix."""

from __future__ import annotations

import random
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from controller.config import CampaignConfig, OperationMix, load_campaign
from controller.errors import ConfigError
from controller.store.archive import Operation
from sandbox.knobs import Knob, parse_knob_table

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ["demo", "h100x1_proxy", "h100x8_record"]

MINIMAL = """
[campaign]
name = "t"
[data]
embedded = true
[tiers.proxy]
device = "cpu"
train_seconds = 10
eval_seconds = 10
[search]
explore_tier = "proxy"
confirm_tier = "proxy"
preflight_smoke = false
"""


def write(tmp_path: Path, text: str, name: str = "campaign.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load_campaign(path)
    assert str(path) in str(info.value)
    return info.value.problems


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_campaigns_load_and_their_tier_overrides_fit_the_seed_program(name):
    config = load_campaign(REPO / "experiments" / f"{name}.toml")
    assert config.campaign.seed_program == REPO / "baseline" / "train_gpt.py"
    assert config.run_dir == REPO / "runs" / config.campaign.name
    assert config.storage_url == f"sqlite:///{config.run_dir / 'study.db'}"
    knobs = parse_knob_table(config.campaign.seed_program.read_text(encoding="utf-8"))
    for tier_name, tier in config.tiers.defined().items():
        env = tier.knob_env(knobs, tier_name)
        assert set(env) == set(tier.knobs)


def test_demo_runs_offline_on_cpu():
    config = load_campaign(REPO / "experiments" / "demo.toml")
    assert config.data.embedded
    assert config.sandbox.gpus == ()
    assert all(t.device == "cpu" for t in config.tiers.defined().values())
    assert config.agent.proposer != "llm"
    assert config.budget.max_llm_usd == 0


def test_record_campaign_uses_the_challenge_limits_and_bar():
    config = load_campaign(REPO / "experiments" / "h100x8_record.toml")
    full = config.confirm
    assert (full.nproc, full.train_seconds, full.eval_seconds) == (8, 600, 600)
    assert full.limits().artifact_bytes == 16_000_000
    assert (full.min_delta_nats, full.p_value) == (0.005, 0.01)
    assert config.data.dataset_dir == REPO / "data" / "datasets" / "fineweb10B_sp1024"


def test_minimal_file_takes_defaults(tmp_path):
    config = load_campaign(write(tmp_path, MINIMAL))
    assert config.run_dir == tmp_path / "runs" / "t"
    assert config.frontier.k == 4
    assert config.study.storage is None and config.storage_url.endswith("/runs/t/study.db")
    assert config.explore.seeds_to_confirm == 3


def test_misspelt_key_suggests_the_right_one(tmp_path):
    text = MINIMAL.replace("train_seconds = 10", "trian_seconds = 10\ntrain_seconds = 10")
    (problem,) = problems_of(write(tmp_path, text))
    assert problem.startswith("tiers.proxy.trian_seconds: unknown key 'trian_seconds'")
    assert "did you mean 'train_seconds'?" in problem


def test_misspelt_tier_name_suggests_the_right_one(tmp_path):
    text = MINIMAL.replace("[tiers.proxy]", "[tiers.proxi]")
    problems = problems_of(write(tmp_path, text))
    assert any("tiers.proxi: unknown key 'proxi'" in p and "did you mean 'proxy'" in p for p in problems)


def test_every_problem_is_listed_with_a_fix(tmp_path):
    text = MINIMAL.replace("eval_seconds = 10", "") + '\n[sandbox]\nbackend = "podman"\ncpu_slots = 0\n'
    problems = problems_of(write(tmp_path, text))
    keys = {p.split(":", 1)[0] for p in problems}
    assert keys == {"tiers.proxy.eval_seconds", "sandbox.backend", "sandbox.cpu_slots"}
    assert all("(fix: " in p for p in problems)


def test_search_tier_without_its_table_is_named(tmp_path):
    text = MINIMAL.replace('confirm_tier = "proxy"', 'confirm_tier = "full"')
    (problem,) = problems_of(write(tmp_path, text))
    assert problem.startswith("search.confirm_tier: tier 'full' has no [tiers.full] table")


def test_gpu_tier_needs_enough_gpus(tmp_path):
    text = MINIMAL.replace('device = "cpu"', 'device = "gpu"\nnproc = 2') + "\n[sandbox]\ngpus = [0]\n"
    (problem,) = problems_of(write(tmp_path, text))
    assert problem.startswith("tiers.proxy: a gpu tier with nproc = 2")


def test_data_needs_exactly_one_source(tmp_path):
    text = MINIMAL.replace("embedded = true", 'dataset_dir = "d"')
    (problem,) = problems_of(write(tmp_path, text))
    assert problem.startswith("data: no data source") and "(fix: " in problem


def test_relative_paths_resolve_against_the_campaign_file(tmp_path):
    text = MINIMAL.replace("embedded = true", 'dataset_dir = "data/ds"\ntokenizer_path = "/abs/tok.model"')
    config = load_campaign(write(tmp_path, text))
    assert config.data.dataset_dir == tmp_path / "data" / "ds"
    assert config.data.tokenizer_path == Path("/abs/tok.model")


def test_seed_program_prefers_the_campaign_folder_then_the_repository(tmp_path):
    (tmp_path / "mine.py").write_text("KNOBS = []\n")
    own = load_campaign(
        write(tmp_path, MINIMAL.replace('name = "t"', 'name = "t"\nseed_program = "mine.py"'))
    )
    assert own.campaign.seed_program == tmp_path / "mine.py"
    default = load_campaign(write(tmp_path, MINIMAL))
    assert default.campaign.seed_program == REPO / "baseline" / "train_gpt.py"


def test_missing_seed_program_is_an_error_only_when_checking_paths(tmp_path):
    path = write(tmp_path, MINIMAL.replace('name = "t"', 'name = "t"\nseed_program = "nope.py"'))
    (problem,) = problems_of(path)
    assert problem.startswith("campaign.seed_program: file not found")
    assert load_campaign(path, check_paths=False).campaign.seed_program == tmp_path / "nope.py"


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, "[campaign\nname = 1\n")
    with pytest.raises(ConfigError, match=r"campaign\.toml: not valid TOML"):
        load_campaign(path)


def test_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="campaign file not found"):
        load_campaign(tmp_path / "absent.toml")


def test_replay_proposer_needs_a_file(tmp_path):
    (problem,) = problems_of(write(tmp_path, MINIMAL + '\n[agent]\nproposer = "replay"\n'))
    assert problem.startswith("agent: replay_file:")


def test_agent_values_are_checked_by_the_agent_settings(tmp_path):
    pytest.importorskip("agent.settings")
    (problem,) = problems_of(write(tmp_path, MINIMAL + "\n[agent]\ntemperature = 5.0\n"))
    assert problem.startswith("agent.temperature:")


def test_agent_section_builds_agent_settings(tmp_path):
    pytest.importorskip("agent.settings")
    text = MINIMAL + '\n[agent]\nmodel = "m1"\ntemperature = 0.2\n[agent.prices]\nm1 = [1.0, 4.0]\n'
    settings = load_campaign(write(tmp_path, text)).agent.to_settings()
    assert (settings.model, settings.temperature) == ("m1", 0.2)
    assert settings.price_per_token() == (1e-6, 4e-6)


def test_tier_overrides_must_name_declared_knobs_with_fitting_types(tmp_path):
    text = MINIMAL + "\n[tiers.proxy.knobs]\nNUM_LAYER = 2\nCOMPILE = 1\nMATRIX_LR = 0.01\n"
    config = load_campaign(write(tmp_path, text))
    knobs = [
        Knob(name="NUM_LAYERS", type="int", default=9),
        Knob(name="COMPILE", type="bool", default=True),
        Knob(name="MATRIX_LR", type="float", default=0.04),
    ]
    with pytest.raises(ConfigError) as info:
        config.tiers.get("proxy").knob_env(knobs, "proxy")
    first, second = info.value.problems
    assert first.startswith("tiers.proxy.knobs.NUM_LAYER:") and "did you mean NUM_LAYERS?" in first
    assert second.startswith("tiers.proxy.knobs.COMPILE: 1 is not a bool")


def test_undefined_tier_lookup_lists_the_defined_ones(tmp_path):
    config = load_campaign(write(tmp_path, MINIMAL))
    with pytest.raises(ConfigError, match=r"'full' is not defined; defined tiers: \['proxy'\]"):
        config.tiers.get("full")


def test_operation_mix_draws_by_weight_and_skips_excluded():
    mix = OperationMix(mutate=3.0, tune=1.0, hypothesis=0.0, confirm=0.0)
    rng = random.Random(7)
    counts = Counter(mix.draw(rng) for _ in range(4000))
    assert set(counts) == {Operation.MUTATE, Operation.TUNE}
    assert 0.70 < counts[Operation.MUTATE] / 4000 < 0.80
    assert mix.draw(random.Random(1), exclude=frozenset({Operation.MUTATE})) is Operation.TUNE
    with pytest.raises(ValueError, match="no operation left"):
        mix.draw(rng, exclude=frozenset({Operation.MUTATE, Operation.TUNE}))


def test_operation_mix_rejects_all_zero(tmp_path):
    text = MINIMAL + "\n[operations]\nmutate = 0\ntune = 0\nhypothesis = 0\nconfirm = 0\n"
    (problem,) = problems_of(write(tmp_path, text))
    assert problem.startswith("operations: all weights are zero")


def test_config_models_are_frozen(tmp_path):
    config = load_campaign(write(tmp_path, MINIMAL))
    assert isinstance(config, CampaignConfig)
    with pytest.raises(ValueError):
        config.frontier.k = 9  # type: ignore[misc]


def test_relative_sqlite_storage_is_relative_to_the_campaign_file(tmp_path):
    config = load_campaign(write(tmp_path, MINIMAL + '\n[study]\nstorage = "sqlite:///db/s.db"\n'))
    assert config.storage_url == f"sqlite:///{tmp_path / 'db' / 's.db'}"
    other = load_campaign(write(tmp_path, MINIMAL + '\n[study]\nstorage = "postgresql://h/db"\n'))
    assert other.storage_url == "postgresql://h/db"
