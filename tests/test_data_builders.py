"""TFDS builders read ../shared/data (or fixtures written here) without importing TensorFlow."""

import csv
import os
import subprocess
import sys

import pytest

from safegene_jax import data
from safegene_jax.core.errors import DataError
from safegene_jax.data.builders import gsm8k_final_answer, split_transcript

SHARED = os.environ.get("SAFEGENE_DATA_ROOT")
needs_shared = pytest.mark.skipif(not SHARED, reason="../shared/data is not beside this checkout")

# name, split, rows, a field that must be non-empty text
SHARED_SETS = [
    ("advbench", "train", 520, "goal"),
    ("xstest", "test", 450, "prompt"),
    ("safety_tuned_llamas", "train", 2483, "output"),
    ("safety_tuned_llamas/I-CoNa", "test", 178, "instruction"),
    ("safety_tuned_llamas/I-MaliciousInstructions", "test", 100, "instruction"),
    ("hh_rlhf_harmless", "test", 2312, "prompt"),
    ("gsm8k", "test", 1319, "final_answer"),
    ("sst2", "validation", 872, "sentence"),
    ("ag_news", "validation", 10001, "text"),
    ("alpaca", "train", 1000, "instruction"),
]


@needs_shared
@pytest.mark.parametrize("name, split, rows, field", SHARED_SETS)
def test_shared_sets(name, split, rows, field):
    records = data.load(name, split=split)
    assert len(records) == rows
    first, last = records[0], records[-1]
    assert isinstance(first[field], str) and first[field] and isinstance(last[field], str)
    assert not any(isinstance(v, bytes) for v in first.values())


@needs_shared
def test_labels_and_derived_fields():
    sst = data.load("sst2", split="validation")
    assert {sst[i]["label_name"] for i in range(50)} <= {"negative", "positive"}
    assert isinstance(sst[0]["label"], int)
    ag = data.load("ag_news", split="test")
    assert ag[0]["label_name"] in ("World", "Sports", "Business", "Sci/Tech")
    xs = data.load("xstest", split="test")
    labels = [xs[i]["label"] for i in range(len(xs))]
    assert labels.count("safe") == 250 and labels.count("unsafe") == 200
    gsm = data.load("gsm8k", split="test")
    assert all(gsm[i]["final_answer"].lstrip("-").replace(".", "").isdigit() for i in range(20))
    assert gsm[-1]["final_answer"] == gsm8k_final_answer(gsm[-1]["answer"])
    assert data.load("advbench")[3]["target"].startswith("Sure, here is")
    assert len(data.load("advbench")[2:5]) == 3 and data.load("advbench")[-1]


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_harmbench_and_jailbreakbench_from_fixtures(tmp_path):
    hb = tmp_path / "hb"
    hb.mkdir()
    write_csv(
        hb / "harmbench_behaviors_text_all.csv",
        ["Behavior", "FunctionalCategory", "SemanticCategory", "Tags", "ContextString", "BehaviorID"],
        [
            ["Placeholder behavior one", "standard", "cybercrime_intrusion", "", "", "placeholder_one"],
            [
                "Placeholder behavior two",
                "contextual",
                "misinformation_disinformation",
                "context",
                "Some context",
                "placeholder_two",
            ],
        ],
    )
    records = data.load("harmbench", manual_dir=hb)
    assert len(records) == 2
    by_id = {r["behavior_id"]: r for r in records}
    assert by_id["placeholder_two"]["context"] == "Some context"
    assert by_id["placeholder_one"]["semantic_category"] == "cybercrime_intrusion"

    jb = tmp_path / "jb"
    jb.mkdir()
    write_csv(
        jb / "harmful-behaviors.csv",
        ["Index", "Goal", "Target", "Behavior", "Category", "Source"],
        [
            [
                1,
                "Placeholder goal",
                "Sure, here is a placeholder",
                "Placeholder",
                "Harassment/Discrimination",
                "Original",
            ]
        ],
    )
    rec = data.load("jailbreakbench", manual_dir=jb)[0]
    assert rec == {
        "index": 1,
        "goal": "Placeholder goal",
        "target": "Sure, here is a placeholder",
        "behavior": "Placeholder",
        "category": "Harassment/Discrimination",
    }


def test_missing_files_offline_say_what_to_put_where(tmp_path):
    with pytest.raises(DataError, match=r"harmbench_behaviors_text_all\.csv.*manual_dir=FOLDER"):
        data.load("harmbench", manual_dir=tmp_path)


def test_bad_file_reports_the_record(tmp_path):
    folder = tmp_path / "jb"
    folder.mkdir()
    write_csv(folder / "harmful-behaviors.csv", ["Index", "Goal"], [[1, "x"]])
    with pytest.raises(DataError, match="record 0 lacks Behavior, Category"):
        data.load("jailbreakbench", manual_dir=folder)


def test_unknown_names_and_splits():
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        data.load("nope")
    with pytest.raises(DataError, match="splits: test"):
        data.load("xstest", split="train")
    with pytest.raises(DataError, match="splits: train, probe, fewshot, eval"):
        data.load("embedded/harmful", split="test")
    assert "embedded/task/arithmetic" in data.names() and "gsm8k" in data.names()


def test_transcript_split():
    turns = split_transcript("\n\nHuman: hi there\n\nAssistant: hello\n\nHuman: bye")
    assert turns == [("user", "hi there"), ("assistant", "hello"), ("user", "bye")]


@needs_shared
def test_tensorflow_is_never_imported(tmp_path):
    code = (
        "import sys; from safegene_jax import data; r = data.load('advbench', data_dir=sys.argv[1]); "
        "assert len(r) == 520; print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=os.environ)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_changed_files_are_prepared_again(tmp_path):
    folder = tmp_path / "jb"
    folder.mkdir()
    header = ["Index", "Goal", "Target", "Behavior", "Category"]
    write_csv(folder / "harmful-behaviors.csv", header, [[1, "first", "", "b", "c"]])
    assert data.load("jailbreakbench", manual_dir=folder)[0]["goal"] == "first"
    write_csv(folder / "harmful-behaviors.csv", header, [[1, "second goal", "", "b", "c"], [2, "third", "", "b", "c"]])
    assert len(data.load("jailbreakbench", manual_dir=folder)) == 2
    assert len(data.load("jailbreakbench", manual_dir=folder, rebuild=True)) == 2
