"""Run configs: files, base chains, overrides, validation, and the cache keys they give."""

import dataclasses
import pathlib

import pytest

from safegene_jax.core.errors import ConfigError
from safegene_jax.method import RecalibrationConfig
from safegene_jax.pipeline import stage_keys
from safegene_jax.pipeline.config import (
    CONFIG_DIR,
    PipelineConfig,
    dump_config,
    load_config,
    parse_override,
)
from safegene_jax.train import TrainConfig

CONFIGS = pathlib.Path(__file__).parent.parent / "configs"


def test_demo_yaml_is_the_defaults():
    assert load_config(CONFIGS / "demo.yaml") == PipelineConfig()


def test_configs_ship_inside_the_package_and_load_by_name():
    assert CONFIGS.resolve() == CONFIG_DIR  # the clone's configs/ is the package's own folder
    assert load_config("quick") == load_config(CONFIG_DIR / "quick.yaml") and load_config("quick").tiny.enabled
    assert load_config("demo.yaml") == PipelineConfig()
    with pytest.raises(ConfigError, match="configs shipped with the package: demo, .*quick"):
        load_config("quik")


def test_sections_are_the_library_configs():
    """One source of defaults: a training section is a TrainConfig, the recalibrate section a
    RecalibrationConfig, with the same defaults; converting keeps every field."""
    cfg = PipelineConfig()
    assert isinstance(cfg.align, TrainConfig) and isinstance(cfg.recalibrate, RecalibrationConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name not in ("seed",):
            assert getattr(cfg.align, f.name) == getattr(TrainConfig(), f.name), f.name
    assert cfg.recalibrate.recalibration_config() == RecalibrationConfig()
    custom = load_config(overrides=["recalibrate.margin=2.5", "recalibrate.seed=7", "align.lora={rank: 4}"])
    assert custom.recalibrate.recalibration_config().margin == 2.5
    assert custom.recalibrate.recalibration_config().seed == 7
    assert custom.align.lora.rank == 4 and custom.align.lora.alpha == 16.0
    from safegene_jax.pipeline.jobs import train_config

    t = train_config(
        load_config(overrides=["seed=10", "degrade.weight_decay=0.2"]).degrade, load_config(overrides=["seed=10"])
    )
    assert (t.seed, t.weight_decay) == (11, 0.2)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.name and cfg.finetune.tasks


def test_dump_round_trips(tmp_path):
    cfg = load_config(overrides=["align.steps=7", "tiny.enabled=true"])
    (tmp_path / "c.yaml").write_text(dump_config(cfg))
    assert load_config(tmp_path / "c.yaml") == cfg


def test_overrides_are_typed():
    cfg = load_config(
        overrides=[
            "align.learning_rate=1e-4",
            "degrade.learning_rate=1",  # an int where a float goes is fine
            "finetune.tasks=[sentiment]",
            "recalibrate.per_kind=true",
            "out_dir=runs/x",
        ]
    )
    assert cfg.align.learning_rate == 1e-4
    assert cfg.degrade.learning_rate == 1.0 and isinstance(cfg.degrade.learning_rate, float)
    assert cfg.finetune.tasks == ["sentiment"]
    assert cfg.recalibrate.per_kind is True
    assert cfg.out_dir == "runs/x"


def test_parse_override_nests():
    assert parse_override("a.b.c=3") == {"a": {"b": {"c": 3}}}
    assert parse_override("x=[1, 2]") == {"x": [1, 2]}


@pytest.mark.parametrize(
    "override, message",
    [
        ("align.stepz=3", "align.stepz: unknown key"),
        ("nope=1", "nope: unknown key"),
        ("align.steps=0", "align.steps: must be >= 1"),
        ("align.steps=2.5", "align.steps: must be an integer"),
        ("align.steps=true", "align.steps: must be an integer"),
        ("align=3", "align: must be a mapping"),
        ("recalibrate.per_kind=yes please", "recalibrate.per_kind: must be true or false"),
        ("recalibrate.utility=mse", "recalibrate.utility: must be nll or kl"),
        ("finetune.tasks=[cooking]", "unknown task 'cooking'"),
        ("finetune.tasks=[]", "name at least one task"),
        ("finetune.tasks=[sst2, sst2]", "names a task twice"),
        ("finetune.harmful_fraction=1.0", "finetune.harmful_fraction: must be in [0, 1)"),
        ("align.compute_dtype=float16", "align.compute_dtype: must be float32 or bfloat16"),
        ("mesh.fsdp=-1", None),
        ("mesh.data=0", "mesh: sizes must be >= 1 or -1"),
        ("mesh.data=-1", "mesh: at most one size may be -1"),
        ("align.lora={rank: 0}", "align.lora.rank: must be >= 1"),
        ("align.lora=3", "align.lora: must be a mapping"),
        ("recalibrate.lam=-1", "recalibrate.lam: must be >= 0"),
        ("recalibrate.l2=-0.1", "recalibrate.l2: must be >= 0"),
        ("recalibrate.margin=-1", "recalibrate.margin: must be >= 0"),
        ("recalibrate.shots=1", "recalibrate.shots: must be >= 2"),
        ("compare.resta_coeffs=[-1]", "compare.resta_coeffs: values must be in [0.0, 10.0]"),
        ("compare.resta_coeffs=[]", "compare.resta_coeffs: a sweep needs at least one value"),
        ("compare.safe_lora_thresholds=[0.3, 0.3]", "compare.safe_lora_thresholds: repeats a value"),
        ("compare.safegene_scales=[x]", "compare.safegene_scales: must be a number"),
        ("compare.methods=[magic]", "compare.methods: unknown method 'magic'"),
        ("compare.ablations=[no_layers]", "compare.ablations: unknown ablation 'no_layers'"),
        ("finetune.fractions=[1.5]", "finetune.fractions: values must be in [0, 1)"),
        ("finetune.fractions=[0.3]", "finetune.fraction_tasks: goes with fractions"),
        ("finetune.second_generation=[sst2]", "finetune.second_generation: 'sst2' is not one of finetune.tasks"),
        ("align.harmful_sets=[nope]", "align.harmful_sets: unknown set 'nope'"),
        ("eval.harmful_sets=[]", "eval.harmful_sets: name at least one set"),
        ("eval.safe_sets=[embedded/harmful]", "eval.safe_sets: unknown set 'embedded/harmful'"),
        ("eval.judges=[vibes]", "eval.judges: unknown set 'vibes'"),
        ("degrade.end_lr_ratio=2", "degrade.end_lr_ratio: must be in [0, 1]"),
        ("tiny.layers=2", "tiny.layers: must be >= 3"),
        ("eval.batch_size=0", "eval.batch_size: must be >= 1"),
        ("compare.resta_drop=1.5", "compare.resta_drop"),
        ("name=", "name: must not be empty"),
        ("=3", "not of the form key=value"),
        ("align.steps", "not of the form key=value"),
        ("align..steps=3", "empty key part"),
    ],
)
def test_bad_values_name_their_key(override, message):
    if message is None:
        load_config(overrides=[override])
        return
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_config(overrides=[override])


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("align: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_base_chain_and_override_order(tmp_path):
    (tmp_path / "base.yaml").write_text("align: {steps: 5, batch_size: 2}\nname: base\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nalign: {steps: 6}\n")
    cfg = load_config(tmp_path / "child.yaml", ["align.batch_size=8"])
    assert (cfg.name, cfg.align.steps, cfg.align.batch_size) == ("base", 6, 8)
    assert cfg.align.learning_rate == PipelineConfig().align.learning_rate


def test_stage_keys_follow_what_each_stage_reads():
    base = stage_keys(PipelineConfig())
    ev = stage_keys(load_config(overrides=["eval.max_new_tokens=8"]))
    changed = {k for k in base if base[k] != ev[k]}
    assert changed == {k for k in base if k.startswith("eval/")}

    rec = stage_keys(load_config(overrides=["recalibrate.lam=0.5"]))
    changed = {k for k in base if base[k] != rec[k]}
    assert changed == {
        "recalibrate/arithmetic",
        "recalibrate/sentiment",
        "eval/arithmetic/safegene",
        "eval/sentiment/safegene",
    }

    deg = stage_keys(load_config(overrides=["degrade.steps=3"]))
    same = {k for k in base if base[k] == deg[k]}
    assert same == {
        "align",
        "finetune/arithmetic",
        "finetune/sentiment",
        "eval/aligned",
        "eval/arithmetic/task",
        "eval/sentiment/task",
    }

    one = stage_keys(load_config(overrides=["finetune.tasks=[arithmetic]"]))
    assert all(base[k] == one[k] for k in one if "sentiment" not in k and k != "eval/aligned")
    assert not any("sentiment" in k for k in one)


def test_frozen():
    cfg = PipelineConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "x"


def test_the_stage_table_drives_order_keys_and_dependencies(monkeypatch):
    import dataclasses as dc

    from safegene_jax.pipeline import stages

    cfg = load_config(overrides=["finetune.tasks=[arithmetic, sentiment]"])
    planned = stages.plan(cfg)
    # the order is the table's, each entry expanded per item; every stage comes after what it builds on
    expanded = [s.name.format(**item) for s in stages.STAGES for item in s.per(cfg)]
    assert [p.name for p in planned] == expanded
    seen = set()
    for p in planned:
        assert set(p.after) <= seen, p.name
        seen.add(p.name)
    assert stage_keys(cfg) == {p.name: p.key for p in planned}
    # a stage added to the table is planned, keyed by what it reads, and its key feeds the stages after it
    extra = stages.Stage(
        "extra/{task}",
        "a stage added for the test",
        reads=("compare.resta_drop",),
        after=("finetune/{task}",),
        outputs=("extra-{task}.json",),
        work=lambda run, task: {},
        per=lambda cfg: [{"task": t} for t in cfg.finetune.tasks],
    )
    follow = dc.replace(
        extra, name="after-extra", after=("extra/sentiment",), outputs=("after.json",), per=lambda cfg: [{}], reads=()
    )
    monkeypatch.setattr(stages, "STAGES", stages.STAGES + (extra, follow))
    keys = stage_keys(cfg)
    assert list(keys)[-3:] == ["extra/arithmetic", "extra/sentiment", "after-extra"]
    other = stage_keys(load_config(overrides=["finetune.tasks=[arithmetic, sentiment]", "compare.resta_drop=0.5"]))
    assert {k for k in keys if keys[k] != other[k]} == {
        "extra/arithmetic",
        "extra/sentiment",
        "after-extra",
        "eval/arithmetic/resta@1",
        "eval/sentiment/resta@1",
    }
    assert [p.outputs[0].name for p in stages.plan(cfg) if p.name.startswith("extra/")] == [
        "extra-arithmetic.json",
        "extra-sentiment.json",
    ]
