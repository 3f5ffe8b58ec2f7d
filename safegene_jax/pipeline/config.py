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
    """Safety alignment: the harmful train split with refusals, plus ``benign`` helpful examples."""

    benign: int = 120

    def __post_init__(self):
        super().__post_init__()
        require(self.benign >= 0, "benign", f"must be >= 0, got {self.benign}")


@dataclasses.dataclass(frozen=True)
class DegradeSection(TrainConfig):
    """Degradation of a copy of the aligned model: harmful requests -> compliant answers."""

    steps: int = 24
    learning_rate: float = 1e-4
    seed: int = 1


@dataclasses.dataclass(frozen=True)
class FinetuneSection(TrainConfig):
    """Downstream task models fine-tuned from the aligned model, each with ``harmful_fraction`` harmful data."""

    seed: int = 2
    tasks: list = dataclasses.field(default_factory=lambda: ["arithmetic", "sentiment"])
    examples: int = 200
    harmful_fraction: float = 0.1

    def __post_init__(self):
        from safegene_jax.data.task_sets import TASK_SETS

        super().__post_init__()
        require(len(self.tasks) >= 1, "tasks", "name at least one task")
        require(len(set(self.tasks)) == len(self.tasks), "tasks", "names a task twice")
        for t in self.tasks:
            require(t in TASK_SETS, "tasks", f"unknown task {t!r}; known: {', '.join(sorted(TASK_SETS))}")
        require(self.examples >= 1, "examples", f"must be >= 1, got {self.examples}")
        require(0.0 <= self.harmful_fraction < 1.0, "harmful_fraction", "must be in [0, 1)")


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

    def __post_init__(self):
        _at_least_one(self, "probes", "max_length", "top_k", "chunk_size")
        require(self.strength > 0, "strength", "must be > 0")
        require(self.utility_weight >= 0, "utility_weight", "must be >= 0")
        require(self.rank >= 0, "rank", "must be >= 0 (0: dense vector)")


@dataclasses.dataclass(frozen=True)
class RecalibrateSection(RecalibrationConfig):
    """Few-shot coefficients per task model: the recalibration options plus how many shots, how long."""

    shots: int = 8
    max_length: int = 96

    def __post_init__(self):
        super().__post_init__()
        require(self.shots >= 2, "shots", f"must be >= 2, got {self.shots}")
        require(self.max_length >= 1, "max_length", f"must be >= 1, got {self.max_length}")

    def recalibration_config(self) -> RecalibrationConfig:
        """The library's options: every field of :class:`RecalibrationConfig`, none dropped."""
        return RecalibrationConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(RecalibrationConfig)})


@dataclasses.dataclass(frozen=True)
class BaselinesSection:
    """RESTA (whole vector at one coefficient, optional DARE drop) and Safe LoRA (cosine threshold)."""

    resta_coeff: float = 1.0
    resta_drop: float = 0.0
    safe_lora_threshold: float = 0.35

    def __post_init__(self):
        require(self.resta_coeff >= 0, "resta_coeff", f"must be >= 0, got {self.resta_coeff}")
        require(0.0 <= self.resta_drop < 1.0, "resta_drop", "must be in [0, 1)")
        require(-1.0 <= self.safe_lora_threshold <= 1.0, "safe_lora_threshold", "is a cosine: must be in [-1, 1]")


@dataclasses.dataclass(frozen=True)
class EvalSection:
    """How many prompts of each set, and generation lengths."""

    harmful: int = 40
    safe: int = 32
    utility: int = 50
    max_new_tokens: int = 48
    utility_max_new_tokens: int = 16
    batch_size: int = 16

    def __post_init__(self):
        _at_least_one(self, "harmful", "safe", "utility", "max_new_tokens", "utility_max_new_tokens", "batch_size")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """The whole run. The defaults are the demo on SmolLM2-135M-Instruct (``configs/demo.yaml``)."""

    name: str = "demo"
    out_dir: str = "runs/demo"
    seed: int = 0  # added to each training section's own seed
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

    def __post_init__(self):
        require(bool(self.name), "name", "must not be empty")
        require(bool(self.out_dir), "out_dir", "must not be empty")
        require(bool(self.model), "model", "must not be empty")

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
        return float(value)
    if tp is str:
        require(isinstance(value, str), key, f"must be a string, got {value!r}")
        return value
    if tp is list:
        require(isinstance(value, list), key, f"must be a list, got {value!r}")
        require(all(isinstance(v, str) for v in value), key, f"must be a list of names, got {value!r}")
        return list(value)
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
