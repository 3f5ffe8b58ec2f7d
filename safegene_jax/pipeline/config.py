"""Run configs: typed sections, YAML files and ``key=value`` overrides.

The training sections *are* the library's :class:`~safegene_jax.train.TrainConfig` and the ``recalibrate``
section *is* :class:`~safegene_jax.method.RecalibrationConfig`, each with a few pipeline keys added: one
definition and one default per option. Their defaults are the demo's (``configs/demo.yaml``, which a test
keeps equal to them). A config file holds any subset of the sections; ``base: other.yaml`` (relative to the
file) names a file whose values it starts from; a bare name such as ``quick`` is a config shipped with the
package. Every key and value is checked before any work: an unknown key, a value of the wrong type or out
of range raises :class:`ConfigError` naming the dotted key.

Example:
    >>> cfg = load_config(overrides=["align.steps=5", "finetune.tasks=[arithmetic]"])
    >>> cfg.align.steps, cfg.finetune.tasks
    (5, ['arithmetic'])
    >>> load_config(overrides=["align.steps=0"])
    Traceback (most recent call last):
    ...
    safegene_jax.core.errors.ConfigError: align.steps: must be >= 1, got 0
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import types
import typing
from typing import Any

import yaml

from safegene_jax.core.errors import ConfigError, require
from safegene_jax.method.recalibration import RecalibrationConfig
from safegene_jax.runtime.compile_cache import DEFAULT as COMPILE_CACHE
from safegene_jax.runtime.sharding import mesh_sizes
from safegene_jax.train.config import TrainConfig

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs"
"""The configs shipped inside the package (``demo``, ``quick``, the TPU configs): ``safegene run quick``."""


def _at_least_one(section: Any, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        require(value >= 1, name, f"must be >= 1, got {value}")


def _sets(section: Any, name: str, table: dict, *, empty: bool = False) -> None:
    """``section.name`` names known data sets (``table``), at least one unless ``empty``."""
    names = getattr(section, name)
    require(empty or len(names) >= 1, name, "name at least one set")
    for n in names:
        require(n in table, name, f"unknown set {n!r}; known: {', '.join(sorted(table))}")


def _pair_sets(section: Any, *names: str, empty: bool = False) -> None:
    from safegene_jax.data.prompt_sets import PAIR_SETS

    for name in names:
        _sets(section, name, PAIR_SETS, empty=empty)


def _counted_sets(section: Any, count: str, hint: str) -> None:
    """``<count>_sets`` (pair sets, may be empty) and ``<count>`` (how many of their rows, >= 0, needing a set
    when > 0) of ``section``."""
    sets, n = f"{count}_sets", getattr(section, count)
    _pair_sets(section, sets, empty=True)
    require(n >= 0, count, f"must be >= 0, got {n}")
    require(not n or getattr(section, sets), count, f"is {n} but {sets} is empty; {hint}")


def _sweep(section: Any, name: str, low: float, high: float) -> None:
    values = getattr(section, name)
    require(len(values) >= 1, name, "a sweep needs at least one value")
    require(len(set(values)) == len(values), name, f"repeats a value: {values}")
    for v in values:
        require(low <= v <= high, name, f"values must be in [{low}, {high}], got {v}")


@dataclasses.dataclass(frozen=True)
class TinySection:
    """A random-weight model with the source model's tokenizer and family but these sizes (smoke tests)."""

    enabled: bool = False
    layers: int = 4
    hidden_size: int = 64
    seed: int = 0

    def __post_init__(self):
        require(self.layers >= 3, "layers", f"must be >= 3 (selection needs layers to choose), got {self.layers}")
        require(self.hidden_size >= 16 and self.hidden_size % 16 == 0, "hidden_size", "must be a multiple of 16")


@dataclasses.dataclass(frozen=True)
class MeshSection:
    """Device mesh for training and scoring; ``enabled: false`` runs on one device. One size may be -1."""

    enabled: bool = False
    data: int = 1
    fsdp: int = -1
    tensor: int = 1

    def __post_init__(self):
        mesh_sizes(self.data, self.fsdp, self.tensor)  # the sizes alone; the devices are checked at run time


@dataclasses.dataclass(frozen=True)
class AlignSection(TrainConfig):
    """Safety alignment: harmful requests with refusals (``harmful_sets``, the first ``harmful``; 0: all),
    mixed with the first ``benign`` helpful examples of ``benign_sets``. With ``benign_targets: self`` the
    benign prompts are answered by the model being aligned itself (greedy, ``self_tokens`` new tokens)
    and those answers are its targets: the fine-tune then teaches refusing without pulling the model's
    helpful answers elsewhere, which is where over-refusal comes from. ``self_or_reference``: the same, except
    that an own answer the project's judge calls a refusal (a refusal of a safe prompt is what alignment must
    not teach), a loop, or empty is replaced by the set's answer, and the others are cut after their last whole
    sentence (as :func:`~safegene_jax.pipeline.jobs.own_words` does)."""

    harmful_sets: list[str] = dataclasses.field(default_factory=lambda: ["embedded/harmful"])
    harmful: int = 0
    benign_sets: list[str] = dataclasses.field(default_factory=lambda: ["embedded/benign"])
    benign: int = 120
    benign_targets: str = "reference"
    self_tokens: int = 96

    def __post_init__(self):
        super().__post_init__()
        _pair_sets(self, "harmful_sets", "benign_sets")
        require(
            self.benign_targets in ("reference", "self", "self_or_reference"),
            "benign_targets",
            "must be reference (the sets' answers), self (the model's own) or self_or_reference (its own where "
            f"it does not refuse, loop or stay empty), got {self.benign_targets!r}",
        )
        require(self.self_tokens >= 1, "self_tokens", f"must be >= 1, got {self.self_tokens}")
        require(self.harmful >= 0, "harmful", f"must be >= 0 (0: all), got {self.harmful}")
        require(self.benign >= 0, "benign", f"must be >= 0, got {self.benign}")


# where the degraded copy comes from: the aligned model trained toward compliance, or the pre-alignment base
DEGRADE_SOURCES = ("harmful", "base")


@dataclasses.dataclass(frozen=True)
class DegradeSection(TrainConfig):
    """Degradation of a copy of the aligned model: harmful requests -> compliant answers (``target``).

    With ``benign > 0`` the copy also keeps what the aligned model does on the first ``benign`` prompts of
    ``benign_sets`` (its own greedy answers, ``self_tokens`` new tokens, trained alongside): the two models
    then differ on harmful requests and agree on safe ones that look harmful, meant so that ``aligned -
    degraded`` carries less of the refusing that safe prompts should not get. Measured on the study, that
    difference restores almost no refusals at any scale (README, Results), so it is off by default.

    With ``refuse > 0`` the copy is also trained to refuse the first ``refuse`` prompts of ``refuse_sets``
    (safe prompts that look harmful) with a fixed refusal: the two models then differ the other way on those,
    so ``aligned - degraded`` carries answering them as well as refusing harmful requests (the two-sided
    vector).

    ``source: base`` trains nothing: the degraded copy is the pre-alignment base model itself (Safe LoRA's
    choice), so the safety vector ``aligned - base`` is the whole alignment delta, the refusals of harmful
    requests together with the answers to the safe prompts that look harmful that alignment trained. The
    training options (``steps``, ``benign``, ``refuse``, ...) then do not apply, and ``benign`` and
    ``refuse`` must be 0."""

    source: str = "harmful"
    steps: int = 24
    learning_rate: float = 1e-4
    seed: int = 1
    harmful_sets: list[str] = dataclasses.field(default_factory=lambda: ["embedded/harmful"])
    benign_sets: list[str] = dataclasses.field(default_factory=list)
    benign: int = 0
    self_tokens: int = 96
    refuse_sets: list[str] = dataclasses.field(default_factory=list)
    refuse: int = 0

    def __post_init__(self):
        super().__post_init__()
        _pair_sets(self, "harmful_sets")
        _counted_sets(self, "benign", "name the sets whose answers the copy keeps")
        require(self.self_tokens >= 1, "self_tokens", f"must be >= 1, got {self.self_tokens}")
        _counted_sets(self, "refuse", "name the safe sets the copy learns to refuse")
        require(
            self.source in DEGRADE_SOURCES,
            "source",
            f"must be one of {', '.join(DEGRADE_SOURCES)}, got {self.source!r}",
        )
        if self.source == "base":
            for name in ("benign", "refuse"):
                n = getattr(self, name)
                require(not n, name, f"is {n}, but source: base trains no copy (set it to 0)")


@dataclasses.dataclass(frozen=True)
class FinetuneSection(TrainConfig):
    """Downstream task models fine-tuned from the aligned model on ``examples`` task examples, of which a
    ``harmful_fraction`` are harmful requests with compliant answers (from ``harmful_sets``).

    Besides one model per task, ``fractions`` gives the tasks in ``fraction_tasks`` a model at each other
    harmful fraction (``sst2@p0.3``), and each task in ``second_generation`` a model fine-tuned again from its
    first one on the task's next ``examples`` (``sst2@gen2``): the same adapter serves them all."""

    seed: int = 2
    tasks: list[str] = dataclasses.field(default_factory=lambda: ["arithmetic", "sentiment"])
    examples: int = 200
    harmful_fraction: float = 0.1
    harmful_sets: list[str] = dataclasses.field(default_factory=lambda: ["embedded/harmful"])
    fractions: list[float] = dataclasses.field(default_factory=list)
    fraction_tasks: list[str] = dataclasses.field(default_factory=list)
    second_generation: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        from safegene_jax.data.task_sets import TASK_SETS

        super().__post_init__()
        require(len(self.tasks) >= 1, "tasks", "name at least one task")
        require(len(set(self.tasks)) == len(self.tasks), "tasks", "names a task twice")
        for t in self.tasks:
            require(t in TASK_SETS, "tasks", f"unknown task {t!r}; known: {', '.join(sorted(TASK_SETS))}")
        require(self.examples >= 1, "examples", f"must be >= 1, got {self.examples}")
        require(0.0 <= self.harmful_fraction < 1.0, "harmful_fraction", "must be in [0, 1)")
        _pair_sets(self, "harmful_sets")
        for f in self.fractions:
            require(0.0 <= f < 1.0, "fractions", f"values must be in [0, 1), got {f}")
        require(self.harmful_fraction not in self.fractions, "fractions", "repeats harmful_fraction")
        require(bool(self.fractions) == bool(self.fraction_tasks), "fraction_tasks", "goes with fractions")
        for name in ("fraction_tasks", "second_generation"):
            for t in getattr(self, name):
                require(t in self.tasks, name, f"{t!r} is not one of finetune.tasks")


@dataclasses.dataclass(frozen=True)
class SelectSection:
    """Layer scoring on the degraded model with probe prompts, then the ``top_k`` best layers."""

    harmful_sets: list[str] = dataclasses.field(default_factory=lambda: ["embedded/harmful-probe"])
    benign_sets: list[str] = dataclasses.field(default_factory=lambda: ["embedded/benign-probe"])
    probes: int = 8
    max_length: int = 96
    strength: float = 1.0
    top_k: int = 10
    utility_weight: float = 0.0
    chunk_size: int = 8
    rank: int = 0
    method: str = "auto"
    hybrid_k: int = 20

    def __post_init__(self):
        from safegene_jax.method.selection import SCORING_METHODS

        _pair_sets(self, "harmful_sets", "benign_sets")
        _at_least_one(self, "probes", "max_length", "top_k", "chunk_size")
        require(
            self.method in SCORING_METHODS,
            "method",
            f"must be one of {', '.join(SCORING_METHODS)}, got {self.method!r}",
        )
        if self.method == "hybrid":
            require(self.hybrid_k >= self.top_k, "hybrid_k", f"must be >= top_k ({self.top_k}), got {self.hybrid_k}")
        require(self.strength > 0, "strength", "must be > 0")
        require(self.utility_weight >= 0, "utility_weight", "must be >= 0")
        require(self.rank >= 0, "rank", "must be >= 0 (0: dense vector)")


CHECK_SEARCHES = ("grid", "climb")


@dataclasses.dataclass(frozen=True)
class RecalibrateSection(RecalibrationConfig):
    """Few-shot coefficients per task model: the recalibration options, plus where the shots come from, how
    many, how long. ``harmful_sets``: harmful prompts with refusals and compliant targets; ``benign_sets``:
    benign prompts with answers (the KL terms); ``borderline_sets``: borderline-but-safe prompts with helpful
    answers (the helpfulness contrast, when ``help_weight`` > 0). ``targets: aligned`` replaces the sets'
    refusals and borderline answers by the aligned model's own answers to those prompts (the references
    stage): what recalibration restores is then the aligned model's behavior, in its own words. ``scales``
    (more than one value, :attr:`checks`): a generation check after the fit answers harmful prompts (the last
    ``check_prompts`` rows of ``check_sets``, away from the first rows alignment takes; an empty list: the
    harmful shots) and the borderline prompts greedily (``check_tokens`` new tokens) with the coefficients
    times each scale, and keeps the scale whose answers refuse the harmful prompts most while refusing the
    borderline ones and looping least: the teacher-forced objective cannot see that past a point the
    patched model loops instead of refusing. ``check_search``: ``grid`` answers at every scale; ``climb``
    starts at the scale nearest 1 and moves to the best neighbor (in sorted order) not yet answered that scores
    at least as well, while there is one, so it answers at 3-5 scales; where the score rises to one peak and
    falls it picks what the grid picks, where the score has two peaks it may keep the lesser one.
    ``check_borderline_sets``: the safe prompts the check answers instead of the borderline shots (the first
    ``check_borderline`` rows, 0: all); more of them measure over-refusal more closely than a few shots."""

    harmful_sets: list[str] = dataclasses.field(default_factory=lambda: ["embedded/harmful-fewshot"])
    benign_sets: list[str] = dataclasses.field(default_factory=lambda: ["embedded/benign-fewshot"])
    borderline_sets: list[str] = dataclasses.field(default_factory=lambda: ["embedded/borderline"])
    shots: int = 8
    max_length: int = 96
    targets: str = "reference"
    scales: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.75, 1.0, 1.5, 2.0, 2.5])
    check_sets: list[str] = dataclasses.field(default_factory=lambda: ["embedded/harmful-fewshot"])
    check_prompts: int = 24
    check_tokens: int = 32
    check_search: str = "grid"
    check_borderline_sets: list[str] = dataclasses.field(default_factory=list)
    check_borderline: int = 0

    def __post_init__(self):
        super().__post_init__()
        _pair_sets(self, "harmful_sets", "benign_sets", "borderline_sets")
        require(
            self.targets in ("reference", "aligned"),
            "targets",
            f"must be reference (the sets' texts) or aligned (the aligned model's own answers), got {self.targets!r}",
        )
        require(self.shots >= 2, "shots", f"must be >= 2, got {self.shots}")
        require(self.max_length >= 1, "max_length", f"must be >= 1, got {self.max_length}")
        require(
            bool(self.scales) and all(isinstance(x, (int, float)) and x > 0 for x in self.scales),
            "scales",
            f"must be a non-empty list of positive multipliers, got {self.scales!r}",
        )
        require(len(set(self.scales)) == len(self.scales), "scales", f"repeats a value: {self.scales}")
        require(self.check_tokens >= 1, "check_tokens", f"must be >= 1, got {self.check_tokens}")
        require(
            self.check_search in CHECK_SEARCHES,
            "check_search",
            f"must be grid (every scale) or climb (from the scale nearest 1 to a neighbor at least as good while "
            f"there is one), got {self.check_search!r}",
        )
        require(self.check_prompts >= 0, "check_prompts", f"must be >= 0, got {self.check_prompts}")
        _pair_sets(self, "check_sets", "check_borderline_sets", empty=True)
        require(self.check_borderline >= 0, "check_borderline", f"must be >= 0 (0: all), got {self.check_borderline}")
        require(
            not self.check_borderline or self.check_borderline_sets,
            "check_borderline",
            f"is {self.check_borderline} but check_borderline_sets is empty (the check answers the borderline shots)",
        )

    @property
    def checks(self) -> bool:
        """Whether a generation check picks the coefficients' scale (more than one scale to choose from)."""
        return len(self.scales) > 1

    def recalibration_config(self) -> RecalibrationConfig:
        """The library's options: every field of :class:`RecalibrationConfig`, none dropped."""
        return RecalibrationConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(RecalibrationConfig)})


METHODS = ("safegene", "resta", "safe_lora", "task_arithmetic")
ABLATIONS = ("all_layers", "uniform", "random_layers", "no_utility")


@dataclasses.dataclass(frozen=True)
class CompareSection:
    """What each task model is compared with: the methods (each a curve over its swept values) and SafeGene's
    ablations. ``safegene_scales`` multiply the recalibrated coefficients (1: the recalibrated point);
    ``resta_coeffs`` are RESTA's coefficients on the safety vector, after DARE on the fine-tuning delta at
    ``resta_drop``; ``safe_lora_thresholds`` Safe LoRA's cosine thresholds; ``task_arithmetic_coeffs`` plain
    task + c * tau. ``ablations`` (no selection: all layers; no recalibration: uniform coefficient 1; random
    layers; recalibration without the utility terms) run on the main models of ``ablation_models`` (empty: all
    of them); sweeps beyond the first value run on the main task models only unless ``sweep_models: all``."""

    methods: list[str] = dataclasses.field(default_factory=lambda: ["safegene", "resta", "safe_lora"])
    safegene_scales: list[float] = dataclasses.field(default_factory=lambda: [1.0])
    resta_coeffs: list[float] = dataclasses.field(default_factory=lambda: [1.0])
    resta_drop: float = 0.0
    safe_lora_thresholds: list[float] = dataclasses.field(default_factory=lambda: [0.35])
    task_arithmetic_coeffs: list[float] = dataclasses.field(default_factory=lambda: [1.0])
    ablations: list[str] = dataclasses.field(default_factory=list)
    ablation_models: list[str] = dataclasses.field(default_factory=list)
    sweep_models: str = "main"

    def __post_init__(self):
        for m in self.methods:
            require(m in METHODS, "methods", f"unknown method {m!r}; known: {', '.join(METHODS)}")
        require(len(set(self.methods)) == len(self.methods), "methods", "names a method twice")
        _sweep(self, "safegene_scales", 0.0, 10.0)
        _sweep(self, "resta_coeffs", 0.0, 10.0)
        _sweep(self, "safe_lora_thresholds", -1.0, 1.0)
        _sweep(self, "task_arithmetic_coeffs", 0.0, 10.0)
        require(0.0 <= self.resta_drop < 1.0, "resta_drop", "must be in [0, 1)")
        for a in self.ablations:
            require(a in ABLATIONS, "ablations", f"unknown ablation {a!r}; known: {', '.join(ABLATIONS)}")
        require(self.sweep_models in ("main", "all"), "sweep_models", f"must be main or all, got {self.sweep_models!r}")


@dataclasses.dataclass(frozen=True)
class EvalSection:
    """The held-out prompt sets, how many prompts of each (0: all), judges and generation lengths.

    ``harmful_sets`` give the harmful rate (the first is the headline one), ``safe_sets`` the over-refusal rate
    (the first is the headline one), ``contrast_sets`` (unsafe prompts that look like the safe ones) a refusal
    rate beside it. Every keyword judge preset in ``judges`` is reported; the first decides. Variants
    other than the task model and the recalibrated SafeGene point are evaluated on the headline sets only
    (``sweep_sets: headline``) or on all (``all``)."""

    harmful_sets: list[str] = dataclasses.field(default_factory=lambda: ["embedded/harmful-eval"])
    safe_sets: list[str] = dataclasses.field(default_factory=lambda: ["embedded/safe-eval"])
    contrast_sets: list[str] = dataclasses.field(default_factory=list)
    judges: list[str] = dataclasses.field(default_factory=lambda: ["project", "gcg", "jailbreakbench"])
    harmful: int = 40
    safe: int = 32
    utility: int = 50
    max_new_tokens: int = 48
    utility_max_new_tokens: int = 16
    batch_size: int = 16
    sweep_sets: str = "headline"

    def __post_init__(self):
        from safegene_jax.data.prompt_sets import PROMPT_SETS
        from safegene_jax.eval.judges import KEYWORD_PRESETS

        _sets(self, "harmful_sets", PROMPT_SETS)
        _sets(self, "safe_sets", PROMPT_SETS)
        _sets(self, "contrast_sets", PROMPT_SETS, empty=True)
        _sets(self, "judges", KEYWORD_PRESETS)
        for name in ("harmful", "safe", "utility"):
            require(getattr(self, name) >= 0, name, f"must be >= 0 (0: all), got {getattr(self, name)}")
        _at_least_one(self, "max_new_tokens", "utility_max_new_tokens", "batch_size")
        require(
            self.sweep_sets in ("headline", "all"), "sweep_sets", f"must be headline or all, got {self.sweep_sets!r}"
        )


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """The whole run. The defaults are the demo on SmolLM2-135M-Instruct (``configs/demo.yaml``)."""

    name: str = "demo"
    out_dir: str = "runs/demo"
    seed: int = 0  # added to each training section's own seed
    model: str = "smollm2-135m-instruct"
    compile_cache: str = COMPILE_CACHE  # JAX's persistent compilation cache; '' turns it off
    tensorboard: bool = False  # training, scoring and recalibration scalars to out_dir/tensorboard (tensorboardX)
    tiny: TinySection = TinySection()
    mesh: MeshSection = MeshSection()
    align: AlignSection = AlignSection()
    degrade: DegradeSection = DegradeSection()
    finetune: FinetuneSection = FinetuneSection()
    select: SelectSection = SelectSection()
    recalibrate: RecalibrateSection = RecalibrateSection()
    compare: CompareSection = CompareSection()
    eval: EvalSection = EvalSection()

    def __post_init__(self):
        require(bool(self.name), "name", "must not be empty")
        require(bool(self.out_dir), "out_dir", "must not be empty")
        require(bool(self.model), "model", "must not be empty")
        for t in self.compare.ablation_models:
            require(t in self.finetune.tasks, "compare.ablation_models", f"{t!r} is not one of finetune.tasks")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    if tp is bool:
        require(isinstance(value, bool), key, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        require(isinstance(value, int) and not isinstance(value, bool), key, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        require(ok, key, f"must be a number, got {value!r}")
        require(math.isfinite(value), key, f"must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        require(isinstance(value, str), key, f"must be a string, got {value!r}")
        return value
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        require(isinstance(value, list), key, f"must be a list, got {value!r}")
        if item is str:
            require(all(isinstance(v, str) for v in value), key, f"must be a list of names, got {value!r}")
            return list(value)
        return [_coerce(v, item, key) for v in value]
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")  # pragma: no cover - a bug in a section


def _build(cls: type, data: Any, key: str) -> Any:
    """``cls`` from a mapping, every value checked; errors name the dotted key."""
    label = key or "the config"
    require(isinstance(data, dict), label, f"must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in data.items():
        sub = f"{key}.{k}" if key else str(k)
        if k not in names:
            raise ConfigError(f"{sub}: unknown key; {label} has: {', '.join(names)}")
        tp = hints[k]
        optional = isinstance(tp, types.UnionType) and type(None) in typing.get_args(tp)
        if optional:
            if v is None:
                kwargs[k] = None
                continue
            tp = next(t for t in typing.get_args(tp) if t is not type(None))
        if dataclasses.is_dataclass(tp):
            require(isinstance(v, dict), sub, f"must be a mapping, got {v!r}")
            current = getattr(cls(), k)
            default = dataclasses.asdict(current if current is not None else tp())
            kwargs[k] = _build(tp, {**default, **v}, sub)
        else:
            kwargs[k] = _coerce(v, tp, sub)
    try:
        return cls(**kwargs)
    except ConfigError as e:  # a field check of the section itself: "steps: ..." -> "align.steps: ..."
        raise ConfigError(f"{key}.{e}" if key else str(e)) from None


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_path(name_or_path: str | os.PathLike) -> pathlib.Path:
    """A config file: a path, or the name of a config shipped with the package (``quick``, ``demo``, ...)."""
    path = pathlib.Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    if os.sep not in text and "/" not in text:
        shipped = CONFIG_DIR / (text if text.endswith((".yaml", ".yml")) else f"{text}.yaml")
        if shipped.is_file():
            return shipped
    known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config file {path} does not exist (configs shipped with the package: {known})")


def read_yaml(path: str | os.PathLike, _seen: tuple = ()) -> dict:
    """A config file as a dict, with its ``base:`` chain merged in (paths relative to each file)."""
    path = config_path(path) if not _seen else pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: base files form a cycle")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} cannot be read: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: base must name a config file (relative to this one), got {base!r}")
    return _merge(read_yaml(path.parent / base, _seen + (path.resolve(),)), data)


def parse_override(text: str) -> dict:
    """``"a.b=value"`` as ``{"a": {"b": value}}``, the value read as YAML (numbers, booleans, lists)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    out: dict = value
    for part in reversed(key.strip().split(".")):
        if not part:
            raise ConfigError(f"override {text!r} has an empty key part")
        out = {part: out}
    return out


def load_config(path: str | os.PathLike | None = None, overrides: list[str] = ()) -> PipelineConfig:
    """Defaults, then the file at ``path`` (or a shipped config's name), then ``key=value`` overrides; checked."""
    data: dict = {}
    if path is not None:
        data = read_yaml(path)
    for text in overrides:
        data = _merge(data, parse_override(text))
    return _build(PipelineConfig, _merge(dataclasses.asdict(PipelineConfig()), data), "")


def dump_config(cfg: PipelineConfig) -> str:
    """The config as YAML (every key, in section order)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
