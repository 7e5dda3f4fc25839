"""A campaign's settings: one TOML file loaded into frozen pydantic models, unknown keys forbidden.

``load_campaign(path)`` is the only entry point. Every problem in the file is reported at once, each as
``key.path: message (fix: ...)``, and a misspelt key gets a "did you mean" from :mod:`difflib`.

Relative paths resolve against the TOML file's directory. ``seed_program`` also falls back to the
repository (the folder holding the ``baseline`` package), so ``baseline/train_gpt.py`` works from any
campaign file. The shipped campaigns live in ``experiments/``; see ``experiments/demo.toml``.
"""

from __future__ import annotations

import difflib
import math
import random
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic import model_validator as _model_validator

from agent.proposal import Operation
from agent.settings import AgentSettings
from controller.config_messages import describe_error
from controller.errors import ConfigError
from sandbox.code_bytes import CodeBytes
from sandbox.knobs import Knob
from sandbox.spec import ARTIFACT_LIMIT_BYTES, IntegritySettings, Limits, Plausibility, ProbeKind

TierName = Literal["smoke", "proxy", "full"]
REPO_ROOT = Path(__file__).resolve().parent.parent
CHALLENGE_EVAL_SEQ_LEN = 1024
# On the CPU the probe's NLL before the cut is bitwise the scored run's (measured, fp32 and bf16, across
# batch sizes: bench/results/integrity_cost.json), so cpu tiers demand exact agreement. GPU kernels are
# picked by batch shape (a probe's partial batches differ) and test-time training's backward passes use
# atomics, so a GPU tier admits noise: up to a quarter of the values may move, each by less than half a
# nat (a one-ulp bf16 change of a logit near the softcap of 30 is 0.125, moving an NLL by at most ~0.25),
# as long as they do not shift on average. Not yet measured on a GPU: a device check should size these.
GPU_INTEGRITY = IntegritySettings(max_changed_fraction=0.25, max_abs_change=0.5)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _resolve(value: Path | None, info: ValidationInfo) -> Path | None:
    """Relative paths are relative to the campaign file (given as ``base_dir`` in the context)."""
    base = (info.context or {}).get("base_dir")
    if value is None or value.is_absolute() or base is None:
        return value
    return (Path(base) / value).resolve()


class CampaignSection(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # becomes a folder name
    seed_program: Path = Field(default=Path("baseline/train_gpt.py"), validate_default=True)
    runs_dir: Path = Field(default=Path("runs"), validate_default=True)
    seed: int = 0  # seeds parent selection, the operation draw and the sampler

    @field_validator("runs_dir")
    @classmethod
    def _resolve_runs_dir(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info) or value

    @field_validator("seed_program")
    @classmethod
    def _find_seed_program(cls, value: Path, info: ValidationInfo) -> Path:
        context = info.context or {}
        candidates = [_resolve(value, info) or value]
        if not value.is_absolute():
            candidates.append(REPO_ROOT / value)
        for candidate in candidates:
            if candidate.is_file():
                return candidate.resolve()
        if context.get("check_paths", False):
            tried = " or ".join(str(c) for c in candidates)
            raise ValueError(
                f"file not found (looked for {tried}); fix: give a path relative to the campaign file "
                "or to the repository, e.g. baseline/train_gpt.py"
            )
        return candidates[0]


class DataSection(_Section):
    """Challenge-format data: either the embedded demo corpus or a shard folder plus its tokenizer."""

    embedded: bool = False
    dataset_dir: Path | None = None  # holds fineweb_train_*.bin and fineweb_val_*.bin
    tokenizer_path: Path | None = None  # SentencePiece .model

    @field_validator("dataset_dir", "tokenizer_path")
    @classmethod
    def _resolve_paths(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(value, info)

    @_model_validator(mode="after")
    def _one_source(self) -> DataSection:
        given = self.dataset_dir is not None or self.tokenizer_path is not None
        if self.embedded and given:
            raise ValueError(
                "embedded = true and dataset_dir/tokenizer_path are both given; fix: keep one of them"
            )
        if not self.embedded and (self.dataset_dir is None or self.tokenizer_path is None):
            raise ValueError(
                "no data source; fix: set embedded = true (demo corpus) or give both dataset_dir "
                "and tokenizer_path"
            )
        return self


class SandboxSection(_Section):
    backend: Literal["local", "docker"] = "local"
    image: str = "autogolf-trainer:latest"  # docker only
    gpus: tuple[int, ...] = ()  # GPU indices this controller may use; empty = CPU only
    cpu_slots: int = Field(default=1, ge=1)  # CPU runs (smoke tier) allowed at once
    # The local backend runs unconfined where bubblewrap does not work (sandbox.backends.local); a campaign whose
    # code comes from an LLM refuses that unless this says the risk is accepted (controller.search.workspace).
    allow_unconfined_local: bool = False
    # Code bytes as the challenge would count them when shipped: "readable" (the program file) or
    # "self_extracting" (the LZMA wrapper the harness builds of it; export then ships that form)
    code_bytes: CodeBytes = CodeBytes.READABLE

    @field_validator("gpus")
    @classmethod
    def _distinct_gpus(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(g < 0 for g in value) or len(set(value)) != len(value):
            raise ValueError(f"{list(value)} must be distinct non-negative GPU indices; fix: e.g. [0, 1]")
        return value


class TierConfig(_Section):
    """One rung of the fidelity ladder (DESIGN.md): how a candidate is run and how its wins are judged."""

    device: Literal["cpu", "gpu"] = "gpu"
    nproc: int = Field(default=1, ge=1)  # processes (one per GPU on a gpu tier)
    train_seconds: float = Field(gt=0)  # training budget; the harness adds startup_grace_seconds
    eval_seconds: float = Field(gt=0)
    startup_grace_seconds: float = Field(default=180.0, ge=0)
    artifact_bytes: int = Field(default=ARTIFACT_LIMIT_BYTES, gt=0)
    # Knob overrides for every run of this tier (e.g. fewer ITERATIONS on the smoke tier).
    knobs: dict[str, Any] = Field(default_factory=dict)
    # What ends training. "steps": exactly ITERATIONS, the program's own wall-clock cap turned off
    # (the harness sets MAX_WALLCLOCK_SECONDS=0), so a loaded machine trains what a quiet one does;
    # "wallclock": the program's cap may end it first, as the challenge rules. Unset: steps on a cpu
    # tier, wallclock on a gpu tier. train_seconds stays the harness's hard limit either way.
    train_bound: Literal["steps", "wallclock"] | None = None
    # The harness's eval sequence length: the NLL file must cover ((N-1)//S)*S targets and the program
    # is given EVAL_SEQ_LEN=S. Unset: the tier's EVAL_SEQ_LEN knob override, else the challenge's 1024.
    eval_seq_len: int | None = Field(default=None, ge=1)
    # The integrity probe ([tiers.<name>.integrity], sandbox.spec.IntegritySettings). Unset: exact
    # agreement on a cpu tier, GPU_INTEGRITY's kernel-noise allowance on a gpu tier. Seed and confirm
    # runs always get the full probe; `probe = "full"` gives it to every run of the tier.
    integrity: IntegritySettings | None = None
    # Confirm stage (stats.welch_one_sided on val_loss in nats). The challenge's bar for a record is
    # delta >= 0.005 nats at p < 0.01 (CHALLENGE.md); proxy tiers may be looser.
    seeds_to_confirm: int = Field(default=3, ge=2)
    min_delta_nats: float = Field(default=0.005, ge=0)
    p_value: float = Field(default=0.01, gt=0, lt=1)

    @field_validator("knobs")
    @classmethod
    def _literal_knob_values(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, setting in value.items():
            if not (name.isidentifier() and name.upper() == name):
                raise ValueError(f"knob name {name!r} must be UPPER_CASE as in the program's KNOBS table")
            if not isinstance(setting, str | int | float | bool):
                raise ValueError(f"{name} = {setting!r}: a knob override must be a string, number or boolean")
        return value

    @_model_validator(mode="after")
    def _one_eval_seq_len(self) -> TierConfig:
        knob = self.knobs.get("EVAL_SEQ_LEN")
        if self.eval_seq_len is not None and knob is not None and knob != self.eval_seq_len:
            raise ValueError(
                f"eval_seq_len = {self.eval_seq_len} but knobs.EVAL_SEQ_LEN = {knob!r}; fix: give one of them "
                "(the harness scores at eval_seq_len and sets EVAL_SEQ_LEN to it)"
            )
        return self

    @_model_validator(mode="after")
    def _no_cap_when_step_bound(self) -> TierConfig:
        cap = self.knobs.get("MAX_WALLCLOCK_SECONDS")  # controller.search.inert.CLOCK_CAP
        if self.step_bound and cap not in (None, 0, "0"):
            raise ValueError(
                f"knobs.MAX_WALLCLOCK_SECONDS = {cap!r} on a tier whose training is bound by steps "
                f"(train_bound = {self.train_bound or 'unset, steps on a cpu tier'!r}); fix: remove it "
                "(the harness turns the program's cap off and trains ITERATIONS steps) or set "
                'train_bound = "wallclock"'
            )
        return self

    @property
    def step_bound(self) -> bool:
        """Whether ITERATIONS alone ends this tier's training (the program's wall-clock cap off)."""
        return (self.train_bound or ("steps" if self.device == "cpu" else "wallclock")) == "steps"

    def harness_eval_seq_len(self) -> int:
        """The eval sequence length the harness scores this tier at."""
        if self.eval_seq_len is not None:
            return self.eval_seq_len
        knob = self.knobs.get("EVAL_SEQ_LEN")
        return int(knob) if isinstance(knob, int) and not isinstance(knob, bool) else CHALLENGE_EVAL_SEQ_LEN

    def integrity_settings(self, *, full: bool) -> IntegritySettings:
        """The probe settings for one run; ``full`` asks for the full probe (seed and confirm runs)."""
        settings = self.integrity or (GPU_INTEGRITY if self.device == "gpu" else IntegritySettings())
        return settings.model_copy(update={"probe": ProbeKind.FULL}) if full else settings

    def limits(self) -> Limits:
        """The sandbox limits for one run of this tier."""
        return Limits(
            train_seconds=self.train_seconds,
            eval_seconds=self.eval_seconds,
            startup_grace_seconds=self.startup_grace_seconds,
            artifact_bytes=self.artifact_bytes,
        )

    def knob_env(self, knobs: list[Knob], tier_name: str = "tier") -> dict[str, str]:
        """Render this tier's overrides as environment strings for a program with ``knobs``.

        Raises :class:`ConfigError` when an override names a knob the program does not declare or has a
        value the knob cannot take, so a stale override fails before any run starts.
        """
        by_name = {k.name: k for k in knobs}
        env: dict[str, str] = {}
        problems: list[str] = []
        for name, setting in self.knobs.items():
            key = f"tiers.{tier_name}.knobs.{name}"
            knob = by_name.get(name)
            if knob is None:
                guess = difflib.get_close_matches(name, list(by_name), n=1)
                fix = f"did you mean {guess[0]}?" if guess else "remove it or add the knob to KNOBS"
                problems.append(f"{key}: the program declares no knob {name} (fix: {fix})")
                continue
            if not _fits(setting, knob.type):
                problems.append(f"{key}: {setting!r} is not a {knob.type} (fix: give a {knob.type} value)")
                continue
            text = knob.render(setting)
            env[name] = text
        if problems:
            raise ConfigError(
                "knob overrides do not fit the program:\n  " + "\n  ".join(problems), tuple(problems)
            )
        return env


def _fits(value: object, type_name: str) -> bool:
    if type_name == "bool" or isinstance(value, bool):
        return type_name == "bool" and isinstance(value, bool)
    if type_name == "int":
        return isinstance(value, int)
    if type_name == "float":
        return isinstance(value, int | float)
    return isinstance(value, str)


class TiersSection(_Section):
    smoke: TierConfig | None = None  # CPU, seconds: catches crashes before any GPU time
    proxy: TierConfig | None = None  # 1 GPU, shorter budget, many in parallel
    full: TierConfig | None = None  # 8 GPUs, 600 s: the challenge's own setting

    def get(self, name: str) -> TierConfig:
        tier = getattr(self, name, None) if name in TiersSection.model_fields else None
        if tier is None:
            raise ConfigError(f"tier {name!r} is not defined; defined tiers: {sorted(self.defined())}")
        return tier

    def defined(self) -> dict[str, TierConfig]:
        return {name: tier for name in TiersSection.model_fields if (tier := getattr(self, name)) is not None}


class SearchSection(_Section):
    explore_tier: TierName = "proxy"  # where new candidates are scored
    confirm_tier: TierName = "full"  # where winners are re-run with extra seeds
    preflight_smoke: bool = True  # run tiers.smoke before the explore tier
    # An adopted program becomes a root only when the harness's BPB and the one it printed in the
    # same run agree this closely (the official-structure test program on CPU: 5.5e-8 apart)
    adopt_bpb_tolerance: float = Field(default=1e-4, gt=0, le=0.05)


class BudgetSection(_Section):
    """The campaign stops at whichever limit comes first; an unset limit does not stop it."""

    max_trials: int | None = Field(default=None, ge=1)
    max_wall_hours: float | None = Field(default=None, gt=0)
    max_llm_usd: float | None = Field(default=None, ge=0)


class AgentSection(AgentSettings):
    """The ``[agent]`` table: which proposer, and the LLM settings (``agent.settings.AgentSettings``,
    whose fields and defaults are defined once, there)."""

    proposer: Literal["llm", "replay", "knobs"] = "llm"
    replay_file: Path | None = None  # JSONL of proposals, for proposer = "replay"

    @field_validator("replay_file", "prompts_dir")
    @classmethod
    def _resolve_paths(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(value, info)

    @field_validator("brief")
    @classmethod
    def _find_brief(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        """The research brief's notes file (agent.brief), relative to the campaign file; it must exist."""
        path = _resolve(value, info)
        if path is not None and (info.context or {}).get("check_paths", False) and not path.is_file():
            raise ValueError(
                f"file not found: {path}; fix: write your notes there, give a path relative to the "
                "campaign file, or remove brief to use the built-in research brief alone"
            )
        return path

    @_model_validator(mode="after")
    def _replay_needs_file(self) -> AgentSection:
        if self.proposer == "replay" and self.replay_file is None:
            raise ValueError("replay_file: proposer = 'replay' needs it; fix: give a JSONL file")
        return self

    def to_settings(self) -> AgentSettings:
        """The LLM settings alone, as the agent takes them."""
        return AgentSettings.model_validate(self.model_dump(exclude={"proposer", "replay_file"}))


class OperationMix(_Section):
    """Relative weights of the operations drawn each trial (normalised; zero switches one off)."""

    mutate: float = Field(default=0.6, ge=0)  # LLM edits the program
    tune: float = Field(default=0.25, ge=0)  # Optuna samples the parent's knobs, code unchanged
    hypothesis: float = Field(default=0.1, ge=0)  # a queued human idea (skipped when the queue is empty)
    confirm: float = Field(default=0.05, ge=0)  # re-run a promising candidate with another seed
    # Offline operations on confirmed wins (controller.search.stacking, .ablation); each is skipped
    # while nothing is eligible: no pair of wins from different lineages, no win of several parts.
    # Off unless a campaign asks: each costs trials that a campaign's budget was sized without.
    stack: float = Field(default=0.0, ge=0)  # replay one win's change onto another's program
    ablate: float = Field(default=0.0, ge=0)  # re-run a win with one part of its change left out

    @_model_validator(mode="after")
    def _some_weight(self) -> OperationMix:
        if not math.isfinite(self.total()) or self.total() <= 0:
            raise ValueError("all weights are zero; fix: give at least one a positive weight")
        return self

    def total(self) -> float:
        return self.mutate + self.tune + self.hypothesis + self.confirm + self.stack + self.ablate

    def weights(self) -> dict[Operation, float]:
        """Normalised weights, zero-weight operations left out."""
        raw = {
            Operation.MUTATE: self.mutate,
            Operation.TUNE: self.tune,
            Operation.HYPOTHESIS: self.hypothesis,
            Operation.CONFIRM: self.confirm,
            Operation.STACK: self.stack,
            Operation.ABLATE: self.ablate,
        }
        return {op: w / self.total() for op, w in raw.items() if w > 0}

    def draw(self, rng: random.Random, exclude: frozenset[Operation] = frozenset()) -> Operation:
        """Draw one operation; ``exclude`` removes some (e.g. hypothesis with an empty queue).

        Raises ``ValueError`` when every operation with weight is excluded.
        """
        weights = {op: w for op, w in self.weights().items() if op not in exclude}
        if not weights:
            raise ValueError(f"no operation left to draw: all of {sorted(self.weights())} are excluded")
        return rng.choices(list(weights), weights=list(weights.values()))[0]


class PlausibilitySection(_Section):
    """``[plausibility]``: how large a gain is believed before the full integrity probe confirms it.

    Judged against the harness's own numbers only (sandbox.spec.Plausibility): the parent's and the
    lineage's seed program's results on the same tier, and a floor that also covers a tier's first run.
    """

    max_gain_over_parent_bpb: float = Field(default=0.1, ge=0)
    max_gain_over_seed_bpb: float = Field(default=0.25, ge=0)
    floor_bpb: float = Field(default=0.5, ge=0)

    def for_run(self, parent_bpb: float | None, seed_bpb: float | None) -> Plausibility:
        return Plausibility(parent_bpb=parent_bpb, seed_bpb=seed_bpb, **self.model_dump())


class FrontierSection(_Section):
    k: int = Field(default=4, ge=1)  # best/1..k; parents are drawn among these
    child_bonus: float = Field(default=1.0, ge=0)  # extra weight for parents with few children


class StudySection(_Section):
    storage: str | None = None  # SQLAlchemy URL; default sqlite:///<run_dir>/study.db
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "none"] = "median"
    n_startup_trials: int = Field(default=10, ge=0)  # random trials before TPE models anything
    pruner_startup_trials: int = Field(default=5, ge=0)  # completed same-tier trials before pruning
    pruner_warmup_steps: int = Field(default=0, ge=0)  # never prune before this step
    # re-runs of a trial whose run was lost (its worker or controller died) before it is given up
    max_reruns: int = Field(default=2, ge=0)

    @field_validator("storage")
    @classmethod
    def _resolve_sqlite_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A relative SQLite file is relative to the campaign file, like every other path."""
        if value is None or not value.startswith("sqlite:///"):
            return value
        file = _resolve(Path(value.removeprefix("sqlite:///")), info)
        return f"sqlite:///{file}"


class CampaignConfig(_Section):
    campaign: CampaignSection
    data: DataSection
    sandbox: SandboxSection = Field(default_factory=SandboxSection)
    tiers: TiersSection
    search: SearchSection = Field(default_factory=SearchSection)
    budget: BudgetSection = Field(default_factory=BudgetSection)
    agent: AgentSection = Field(default_factory=AgentSection)
    operations: OperationMix = Field(default_factory=OperationMix)
    frontier: FrontierSection = Field(default_factory=FrontierSection)
    study: StudySection = Field(default_factory=StudySection)
    plausibility: PlausibilitySection = Field(default_factory=PlausibilitySection)

    @_model_validator(mode="after")
    def _consistent(self) -> CampaignConfig:
        defined = self.tiers.defined()
        problems = []
        for key in ("explore_tier", "confirm_tier"):
            name = getattr(self.search, key)
            if name not in defined:
                problems.append(
                    f"search.{key}: tier {name!r} has no [tiers.{name}] table; fix: add it or pick one of "
                    f"{sorted(defined)}"
                )
        if self.search.preflight_smoke and "smoke" not in defined:
            problems.append(
                "search.preflight_smoke: true but there is no [tiers.smoke]; fix: add one or set it false"
            )
        for name, tier in defined.items():
            if tier.device == "gpu" and len(self.sandbox.gpus) < tier.nproc:
                problems.append(
                    f"tiers.{name}: a gpu tier with nproc = {tier.nproc} but sandbox.gpus lists "
                    f"{len(self.sandbox.gpus)}; fix: list more GPUs under [sandbox] or set device = 'cpu'"
                )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def run_dir(self) -> Path:
        """``<runs_dir>/<name>``: the study, the git store and every run's files live here."""
        return self.campaign.runs_dir / self.campaign.name

    @property
    def storage_url(self) -> str:
        if self.study.storage:
            return self.study.storage
        return f"sqlite:///{self.run_dir.resolve() / 'study.db'}"

    @property
    def explore(self) -> TierConfig:
        return self.tiers.get(self.search.explore_tier)

    @property
    def confirm(self) -> TierConfig:
        return self.tiers.get(self.search.confirm_tier)


def load_campaign(path: str | Path, *, check_paths: bool = True) -> CampaignConfig:
    """Read and validate a campaign file.

    ``check_paths`` makes a missing seed program an error (data paths are not checked: ``autogolf data``
    may create them later). Raises :class:`ConfigError` naming the file and listing every problem.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: campaign file not found", hint="pass a path to a .toml file, e.g. experiments/demo.toml"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: not valid TOML: {exc}", hint="fix the syntax at the position given"
        ) from exc
    context = {"base_dir": path.resolve().parent, "check_paths": check_paths}
    try:
        config = CampaignConfig.model_validate(raw, context=context)
    except ValidationError as exc:
        problems = tuple(line for error in exc.errors() for line in describe_error(error, CampaignConfig))
        raise _config_error(path, problems) from None
    return config


def _config_error(path: Path, problems: tuple[str, ...]) -> ConfigError:
    listing = "\n  ".join(problems)
    return ConfigError(f"{path}: {len(problems)} problem(s):\n  {listing}", problems)
