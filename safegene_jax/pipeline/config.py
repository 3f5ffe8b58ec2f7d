"""Run configs: typed sections with the demo's values as defaults, YAML files and ``key=value`` overrides.

A config file holds any subset of the sections below; ``base: other.yaml`` (relative to the file) names a
file whose values it starts from. Every key and value is checked before any work: an unknown key, a
value of the wrong type or out of range raises :class:`ConfigError` naming the dotted key.

Example:
    >>> cfg = load_config(overrides=["align.steps=5", "finetune.tasks=[arithmetic]"])
    >>> cfg.align.steps, cfg.finetune.tasks
    (5, ['arithmetic'])
    >>> load_config(overrides=["align.stepz=5"])
    Traceback (most recent call last):
    ...
    safegene_jax.config.ConfigError: align.stepz: unknown key; align has: steps, batch_size, grad_accum, \
learning_rate, warmup_steps, max_length, lora_rank, compute_dtype, save_every, length_bucket, benign
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import types
import typing
from typing import Any

import yaml

from safegene_jax.compile_cache import DEFAULT as COMPILE_CACHE
from safegene_jax.errors import SafeGeneError


class ConfigError(SafeGeneError, ValueError):
    """A config key or value is not valid (the message names the dotted key)."""


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _at_least_one(section: Any, key: str, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        _require(value >= 1, f"{key}.{name}", f"must be >= 1, got {value}")


@dataclasses.dataclass(frozen=True)
class TinySection:
    """A random-weight model with the source model's tokenizer and family but these sizes (smoke tests)."""

    enabled: bool = False
    layers: int = 4
    hidden_size: int = 64
    seed: int = 0

    def check(self, key: str) -> None:
        _require(
            self.layers >= 3, f"{key}.layers", f"must be >= 3 (selection needs layers to choose), got {self.layers}"
        )
        _require(
            self.hidden_size >= 16 and self.hidden_size % 16 == 0, f"{key}.hidden_size", "must be a multiple of 16"
        )


@dataclasses.dataclass(frozen=True)
class MeshSection:
    """Device mesh for training and scoring; ``enabled: false`` runs on one device. One size may be -1."""

    enabled: bool = False
    data: int = 1
    fsdp: int = -1
    tensor: int = 1

    def check(self, key: str) -> None:
        sizes = [self.data, self.fsdp, self.tensor]
        _require(all(s == -1 or s >= 1 for s in sizes), key, f"sizes must be >= 1 or -1, got {sizes}")
        _require(sizes.count(-1) <= 1, key, "at most one size may be -1")


@dataclasses.dataclass(frozen=True)
class TrainSection:
    """One fine-tuning run (see :class:`safegene_jax.train.TrainConfig`); ``lora_rank: 0`` is full fine-tuning."""

    steps: int = 40
    batch_size: int = 4
    grad_accum: int = 1
    learning_rate: float = 5e-5
    warmup_steps: int = 4
    max_length: int = 128
    lora_rank: int = 0
    compute_dtype: str = "float32"
    save_every: int = 20
    length_bucket: int = 32  # pad lengths to a multiple: = max_length compiles one step (accelerators)

    def check(self, key: str) -> None:
        _at_least_one(self, key, "steps", "batch_size", "grad_accum", "max_length", "save_every", "length_bucket")
        _require(self.warmup_steps >= 0, f"{key}.warmup_steps", "must be >= 0")
        _require(self.lora_rank >= 0, f"{key}.lora_rank", "must be >= 0 (0: full fine-tuning)")
        _require(self.learning_rate > 0, f"{key}.learning_rate", f"must be > 0, got {self.learning_rate}")
        _require(
            self.compute_dtype in ("float32", "bfloat16"),
            f"{key}.compute_dtype",
            f"must be float32 or bfloat16, got {self.compute_dtype!r}",
        )


@dataclasses.dataclass(frozen=True)
class AlignSection(TrainSection):
    """Safety alignment: the harmful train split with refusals, plus ``benign`` helpful examples."""

    benign: int = 120

    def check(self, key: str) -> None:
        super().check(key)
        _require(self.benign >= 0, f"{key}.benign", "must be >= 0")


@dataclasses.dataclass(frozen=True)
class DegradeSection(TrainSection):
    """Degradation of a copy of the aligned model: harmful requests -> compliant answers."""

    steps: int = 24
    learning_rate: float = 1e-4


@dataclasses.dataclass(frozen=True)
class FinetuneSection(TrainSection):
    """Downstream task models fine-tuned from the aligned model, each with ``harmful_fraction`` harmful data."""

    tasks: list = dataclasses.field(default_factory=lambda: ["arithmetic", "sentiment"])
    examples: int = 200
    harmful_fraction: float = 0.1

    def check(self, key: str) -> None:
        from safegene_jax.data.task_sets import TASK_SETS

        super().check(key)
        _require(len(self.tasks) >= 1, f"{key}.tasks", "name at least one task")
        _require(len(set(self.tasks)) == len(self.tasks), f"{key}.tasks", "names a task twice")
        for t in self.tasks:
            _require(t in TASK_SETS, f"{key}.tasks", f"unknown task {t!r}; known: {', '.join(sorted(TASK_SETS))}")
        _require(self.examples >= 1, f"{key}.examples", "must be >= 1")
        _require(0.0 <= self.harmful_fraction < 1.0, f"{key}.harmful_fraction", "must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class SelectSection:
    """Layer scoring on the degraded model with probe prompts, then the ``top_k`` best layers."""

    probes: int = 8
    max_length: int = 96
    strength: float = 1.0
    top_k: int = 10
    utility_weight: float = 0.0
    chunk_size: int = 8
    rank: int = 0

    def check(self, key: str) -> None:
        _at_least_one(self, key, "probes", "max_length", "top_k", "chunk_size")
        _require(self.strength > 0, f"{key}.strength", "must be > 0")
        _require(self.rank >= 0, f"{key}.rank", "must be >= 0 (0: dense vector)")


@dataclasses.dataclass(frozen=True)
class RecalibrateSection:
    """Few-shot coefficients per task (see :class:`safegene_jax.recalibrate.RecalibrationConfig`)."""

    shots: int = 8
    max_length: int = 96
    steps: int = 30
    learning_rate: float = 0.1
    alpha_init: float = 1.0
    alpha_max: float = 3.0
    l2: float = 0.01
    lam: float = 1.0
    utility: str = "nll"
    per_kind: bool = False
    val_fraction: float = 0.25
    patience: int = 8
    safety: str = "contrast"
    onset_tokens: int = 4
    margin: float = 1.0

    def check(self, key: str) -> None:
        _require(
            self.safety in ("contrast", "refusal"), f"{key}.safety", f"must be contrast or refusal, got {self.safety!r}"
        )
        _require(self.shots >= 2, f"{key}.shots", "must be >= 2")
        _require(self.max_length >= 1, f"{key}.max_length", "must be >= 1")
        _require(self.utility in ("nll", "kl"), f"{key}.utility", f"must be nll or kl, got {self.utility!r}")
        _require(0 <= self.alpha_init <= self.alpha_max, f"{key}.alpha_init", "must be in [0, alpha_max]")
        try:
            self.recalibration_config()
        except SafeGeneError as e:
            raise ConfigError(f"{key}: {e}") from None

    def recalibration_config(self):
        from safegene_jax.recalibrate import RecalibrationConfig

        fields = {f.name for f in dataclasses.fields(RecalibrationConfig)}
        return RecalibrationConfig(**{k: v for k, v in dataclasses.asdict(self).items() if k in fields})


@dataclasses.dataclass(frozen=True)
class BaselinesSection:
    """RESTA (whole vector at one coefficient, optional DARE drop) and Safe LoRA (cosine threshold)."""

    resta_coeff: float = 1.0
    resta_drop: float = 0.0
    safe_lora_threshold: float = 0.35

    def check(self, key: str) -> None:
        _require(0.0 <= self.resta_drop < 1.0, f"{key}.resta_drop", "must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class EvalSection:
    """How many prompts of each set, and generation lengths."""

    harmful: int = 40
    safe: int = 32
    utility: int = 50
    max_new_tokens: int = 48
    utility_max_new_tokens: int = 16
    batch_size: int = 16

    def check(self, key: str) -> None:
        _at_least_one(self, key, "harmful", "safe", "utility", "max_new_tokens", "utility_max_new_tokens", "batch_size")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """The whole run. The defaults are the demo on SmolLM2-135M-Instruct (``configs/demo.yaml``)."""

    name: str = "demo"
    out_dir: str = "runs/demo"
    seed: int = 0
    model: str = "smollm2-135m-instruct"
    compile_cache: str = COMPILE_CACHE  # JAX's persistent compilation cache; '' turns it off
    tiny: TinySection = TinySection()
    mesh: MeshSection = MeshSection()
    align: AlignSection = AlignSection()
    degrade: DegradeSection = DegradeSection()
    finetune: FinetuneSection = FinetuneSection()
    select: SelectSection = SelectSection()
    recalibrate: RecalibrateSection = RecalibrateSection()
    baselines: BaselinesSection = BaselinesSection()
    eval: EvalSection = EvalSection()

    def check(self) -> None:
        _require(bool(self.name), "name", "must not be empty")
        _require(bool(self.out_dir), "out_dir", "must not be empty")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                value.check(f.name)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def section_hash(self, *names: str) -> str:
        """A short hash of the named sections (or top-level keys), for stage cache keys."""
        d = self.to_dict()
        return hashlib.sha256(json.dumps({n: d[n] for n in names}, sort_keys=True).encode()).hexdigest()[:16]


# the --quick run: the same path on a tiny random model with few steps (kept equal to configs/quick.yaml)
QUICK = {
    "name": "quick",
    "out_dir": "runs/quick",
    "tiny": {"enabled": True, "layers": 4, "hidden_size": 64},
    "align": {"steps": 3, "batch_size": 2, "max_length": 96, "benign": 8, "learning_rate": 1e-3},
    "degrade": {"steps": 3, "batch_size": 2, "max_length": 96, "learning_rate": 1e-3},
    "finetune": {"steps": 3, "batch_size": 2, "max_length": 96, "examples": 8, "learning_rate": 1e-3},
    "select": {"probes": 2, "max_length": 64, "top_k": 2},
    "recalibrate": {"shots": 4, "max_length": 64, "steps": 3, "patience": 2},
    "eval": {"harmful": 4, "safe": 4, "utility": 4, "max_new_tokens": 8, "utility_max_new_tokens": 8, "batch_size": 4},
}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    if tp is bool:
        _require(isinstance(value, bool), key, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        _require(isinstance(value, int) and not isinstance(value, bool), key, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        _require(ok, key, f"must be a number, got {value!r}")
        return float(value)
    if tp is str:
        _require(isinstance(value, str), key, f"must be a string, got {value!r}")
        return value
    if tp is list:
        _require(isinstance(value, list), key, f"must be a list, got {value!r}")
        _require(all(isinstance(v, str) for v in value), key, f"must be a list of names, got {value!r}")
        return list(value)
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")  # pragma: no cover - a bug in a section


def _build(cls: type, data: Any, key: str) -> Any:
    label = key or "the config"
    _require(isinstance(data, dict), label, f"must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in data.items():
        sub = f"{key}.{k}" if key else str(k)
        if k not in names:
            raise ConfigError(f"{sub}: unknown key; {label} has: {', '.join(names)}")
        tp = hints[k]
        if isinstance(tp, types.UnionType):  # pragma: no cover - no optional fields yet
            tp = next(t for t in typing.get_args(tp) if t is not type(None))
        if dataclasses.is_dataclass(tp):
            default = dataclasses.asdict(getattr(cls(), k))
            _require(isinstance(v, dict), sub, f"must be a mapping, got {v!r}")
            kwargs[k] = _build(tp, {**default, **v}, sub)
        else:
            kwargs[k] = _coerce(v, tp, sub)
    return cls(**kwargs)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | os.PathLike, _seen: tuple = ()) -> dict:
    """A config file as a dict, with its ``base:`` chain merged in (paths relative to each file)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: base files form a cycle")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys")
    base = data.pop("base", None)
    if base is None:
        return data
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


def load_config(
    path: str | os.PathLike | None = None, overrides: list[str] = (), *, base: dict | None = None
) -> PipelineConfig:
    """Defaults, then ``base`` (a dict), then the file at ``path``, then ``key=value`` overrides; checked."""
    data: dict = dict(base or {})
    if path is not None:
        data = _merge(data, read_yaml(path))
    for text in overrides:
        data = _merge(data, parse_override(text))
    cfg = _build(PipelineConfig, _merge(dataclasses.asdict(PipelineConfig()), data), "")
    cfg.check()
    return cfg


def dump_config(cfg: PipelineConfig) -> str:
    """The config as YAML (every key, in section order)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
