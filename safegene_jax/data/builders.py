"""TFDS builders for the public safety and utility sets, written as ``array_record`` and read with
``as_data_source()``, so TensorFlow is never imported.

Each builder reads its files from a ``manual_dir`` when they are there (offline), downloads them from
their public source otherwise, and, when neither works, says which files to put where.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import pathlib
import re
import socket
import urllib.parse
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from safegene_jax.core.errors import DataError

_GH = "https://raw.githubusercontent.com"


def _reachable(host: str | None, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host:443`` opens quickly (so an offline machine fails fast)."""
    if not host:
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _text(*names: str) -> dict:
    return {n: tfds.features.Text() for n in names}


def _csv_rows(path: pathlib.Path, fieldnames=None, delimiter=",") -> Iterator[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        yield from csv.DictReader(f, fieldnames=fieldnames, delimiter=delimiter)


def _jsonl(path: pathlib.Path) -> Iterator[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _instruction_rows(path: pathlib.Path) -> Iterator[dict]:
    """Alpaca-style JSON lists: instruction, optional input, output."""
    for i, row in enumerate(json.loads(pathlib.Path(path).read_text(encoding="utf-8"))):
        _need(row, ("instruction", "output"), path, i)
        yield {"instruction": row["instruction"], "input": row.get("input") or "", "output": row["output"]}


def _need(row: dict, keys: tuple[str, ...], path: pathlib.Path, i: int) -> None:
    missing = [k for k in keys if k not in row or row[k] is None]
    if missing:
        raise DataError(f"{path}: record {i} lacks {', '.join(missing)} (has {', '.join(map(str, row))})")


class _SafegeneBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Common shape: ``FILES`` per split (manual_dir names), ``URLS`` per split, a ``parse`` per file."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put the dataset's files (see FILES) in the manual_dir."
    FEATURES: dict = {}
    FILES: dict[str, str] = {}
    URLS: dict[str, str] = {}
    HOMEPAGE = ""

    @classmethod
    def manual_instructions(cls) -> str:
        files = ", ".join(sorted(set(cls.FILES.values())))
        return f"put {files} (from {cls.HOMEPAGE or 'the dataset homepage'}) in a folder"

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(self.FEATURES),
            homepage=self.HOMEPAGE,
            description=(self.__doc__ or "").strip(),
        )

    def _files(self, dl_manager) -> dict[str, pathlib.Path]:
        manual = None
        try:
            manual = pathlib.Path(dl_manager.manual_dir) if dl_manager.manual_dir else None
        except Exception:  # tfds raises when no manual_dir was configured
            manual = None
        if manual is not None and all((manual / f).exists() for f in self.FILES.values()):
            return {split: manual / f for split, f in self.FILES.items()}
        if self.URLS:
            host = urllib.parse.urlparse(next(iter(self.URLS.values()))).hostname
            if os.environ.get("SAFEGENE_OFFLINE", "0") not in ("", "0"):
                reason = "SAFEGENE_OFFLINE is set"
            elif not _reachable(host):
                reason = f"{host} cannot be reached"
            else:
                try:
                    got = dl_manager.download({split: url for split, url in self.URLS.items()})
                    return {split: pathlib.Path(p) for split, p in got.items()}
                except Exception as e:
                    reason = f"download failed ({type(e).__name__})"
        else:
            reason = "it has no public download address"
        where = f" (looked in {manual})" if manual else ""
        raise DataError(
            f"{self.name}: files not found{where} and {reason}; {self.manual_instructions()}: "
            "pass manual_dir=FOLDER to safegene_jax.data.load, or set SAFEGENE_DATA_ROOT to a root "
            "with one folder per dataset"
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(path) for split, path in self._files(dl_manager).items()}

    def _generate_examples(self, path: pathlib.Path):
        yield from enumerate(self.parse(path))

    def parse(self, path: pathlib.Path) -> Iterator[dict]:  # pragma: no cover - every builder defines it
        raise NotImplementedError


class SafegeneAdvbench(_SafegeneBuilder):
    """AdvBench harmful behaviors (Zou et al. 2023): a harmful goal and its "Sure, here is" target."""

    FEATURES = _text("goal", "target")
    FILES = {"train": "harmful_behaviors.csv"}
    URLS = {"train": f"{_GH}/llm-attacks/llm-attacks/main/data/advbench/harmful_behaviors.csv"}
    HOMEPAGE = "https://github.com/llm-attacks/llm-attacks"

    def parse(self, path):
        for i, row in enumerate(_csv_rows(path)):
            _need(row, ("goal", "target"), path, i)
            yield {"goal": row["goal"], "target": row["target"]}


class SafegeneHarmbench(_SafegeneBuilder):
    """HarmBench text behaviors (Mazeika et al. 2024)."""

    FEATURES = _text("behavior", "functional_category", "semantic_category", "tags", "context", "behavior_id")
    FILES = {"train": "harmbench_behaviors_text_all.csv"}
    URLS = {"train": f"{_GH}/centerforaisafety/HarmBench/main/data/behavior_datasets/harmbench_behaviors_text_all.csv"}
    HOMEPAGE = "https://github.com/centerforaisafety/HarmBench"
    COLUMNS = {
        "Behavior": "behavior",
        "FunctionalCategory": "functional_category",
        "SemanticCategory": "semantic_category",
        "Tags": "tags",
        "ContextString": "context",
        "BehaviorID": "behavior_id",
    }

    def parse(self, path):
        for i, row in enumerate(_csv_rows(path)):
            _need(row, ("Behavior", "BehaviorID"), path, i)
            yield {ours: row.get(theirs) or "" for theirs, ours in self.COLUMNS.items()}


class SafegeneJailbreakbench(_SafegeneBuilder):
    """JailbreakBench harmful behaviors (Chao et al. 2024)."""

    FEATURES = {"index": tfds.features.Scalar(np.int32), **_text("goal", "target", "behavior", "category")}
    FILES = {"train": "harmful-behaviors.csv"}
    URLS = {
        "train": "https://huggingface.co/datasets/JailbreakBench/JBB-Behaviors/resolve/main/data/harmful-behaviors.csv"
    }
    HOMEPAGE = "https://github.com/JailbreakBench/jailbreakbench"

    def parse(self, path):
        for i, row in enumerate(_csv_rows(path)):
            _need(row, ("Index", "Goal", "Behavior", "Category"), path, i)
            yield {
                "index": int(row["Index"]),
                "goal": row["Goal"],
                "target": row.get("Target") or "",
                "behavior": row["Behavior"],
                "category": row["Category"],
            }


class SafegeneXstest(_SafegeneBuilder):
    """XSTest (Röttger et al. 2024): 250 safe prompts that look unsafe, and 200 unsafe contrast prompts."""

    FEATURES = {"id": tfds.features.Scalar(np.int32), **_text("prompt", "type", "label", "focus", "note")}
    FILES = {"test": "xstest_prompts.csv"}
    URLS = {"test": f"{_GH}/paul-rottger/exaggerated-safety/main/xstest_prompts.csv"}
    HOMEPAGE = "https://github.com/paul-rottger/exaggerated-safety"

    def parse(self, path):
        for i, row in enumerate(_csv_rows(path)):
            _need(row, ("id", "prompt", "type", "label"), path, i)
            yield {
                "id": int(row["id"]),
                "prompt": row["prompt"],
                "type": row["type"],
                "label": row["label"],
                "focus": row.get("focus") or "",
                "note": row.get("note") or "",
            }


class SafegeneSafetyTunedLlamas(_SafegeneBuilder):
    """Safety-tuned LLaMAs (Bianchi et al. 2024): harmful instructions paired with refusals."""

    FEATURES = _text("instruction", "input", "output")
    FILES = {"train": "safety_only_data_Instructions.json"}
    URLS = {"train": f"{_GH}/vinid/safety-tuned-llamas/main/data/training/safety_only_data_Instructions.json"}
    HOMEPAGE = "https://github.com/vinid/safety-tuned-llamas"

    def parse(self, path):
        return _instruction_rows(path)


EVAL_SETS = (
    "I-Alpaca",
    "I-CoNa",
    "I-Controversial",
    "I-MaliciousInstructions",
    "I-PhysicalSafetySafe",
    "I-PhysicalSafetyUnsafe",
    "Q-Harm",
)


class SafegeneSafetyEval(_SafegeneBuilder):
    """The evaluation sets of safety-tuned LLaMAs, one config each (``{instructions, inputs}`` lists)."""

    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n.lower().replace("-", "_"), description=n) for n in EVAL_SETS]
    FEATURES = _text("instruction", "input")
    HOMEPAGE = "https://github.com/vinid/safety-tuned-llamas"

    @property
    def FILES(self):  # noqa: N802 - per-config file name
        return {"test": f"{self.builder_config.description}.json"}

    @property
    def URLS(self):  # noqa: N802
        return {"test": f"{_GH}/vinid/safety-tuned-llamas/main/data/evaluation/{self.builder_config.description}.json"}

    def manual_instructions(self) -> str:
        return f"put {self.FILES['test']} (from {self.HOMEPAGE}, data/evaluation) in a folder"

    def parse(self, path):
        data = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
        if "instructions" not in data:
            raise DataError(f"{path}: expected an object with an 'instructions' list")
        inputs = data.get("inputs") or [""] * len(data["instructions"])
        for instruction, extra in zip(data["instructions"], inputs):
            yield {"instruction": instruction, "input": extra or ""}


_TURN = re.compile(r"\n\n(Human|Assistant): ")


def split_transcript(text: str) -> list[tuple[str, str]]:
    """An HH-RLHF transcript as ``[(role, text), ...]`` with roles ``user``/``assistant``."""
    parts = _TURN.split(text)
    turns = []
    for role, body in zip(parts[1::2], parts[2::2]):
        turns.append(("user" if role == "Human" else "assistant", body.strip()))
    return turns


class SafegeneHhRlhfHarmless(_SafegeneBuilder):
    """Anthropic HH-RLHF harmless-base: chosen/rejected transcripts, with the first user turn as prompt."""

    FEATURES = _text("prompt", "chosen", "rejected")
    FILES = {"test": "test.jsonl.gz"}
    URLS = {
        "test": "https://huggingface.co/datasets/Anthropic/hh-rlhf/resolve/main/harmless-base/test.jsonl.gz",
        "train": "https://huggingface.co/datasets/Anthropic/hh-rlhf/resolve/main/harmless-base/train.jsonl.gz",
    }
    HOMEPAGE = "https://github.com/anthropics/hh-rlhf"

    def parse(self, path):
        for i, row in enumerate(_jsonl(path)):
            _need(row, ("chosen", "rejected"), path, i)
            turns = split_transcript(row["chosen"])
            yield {"prompt": turns[0][1] if turns else "", "chosen": row["chosen"], "rejected": row["rejected"]}


def gsm8k_final_answer(answer: str) -> str:
    """The number after ``####`` in a GSM8K solution, without thousands separators."""
    m = re.search(r"####\s*(.+)\s*$", answer)
    return m.group(1).strip().replace(",", "") if m else ""


class SafegeneGsm8k(_SafegeneBuilder):
    """GSM8K grade-school math (Cobbe et al. 2021): question, worked answer, final number."""

    FEATURES = _text("question", "answer", "final_answer")
    FILES = {"train": "train.jsonl", "test": "test.jsonl"}
    URLS = {s: f"{_GH}/openai/grade-school-math/master/grade_school_math/data/{s}.jsonl" for s in ("train", "test")}
    HOMEPAGE = "https://github.com/openai/grade-school-math"

    def parse(self, path):
        for i, row in enumerate(_jsonl(path)):
            _need(row, ("question", "answer"), path, i)
            yield {
                "question": row["question"],
                "answer": row["answer"],
                "final_answer": gsm8k_final_answer(row["answer"]),
            }


class SafegeneSst2(_SafegeneBuilder):
    """SST-2 binary sentiment (GLUE): sentence and label (0 negative, 1 positive)."""

    FEATURES = {"sentence": tfds.features.Text(), "label": tfds.features.ClassLabel(names=["negative", "positive"])}
    FILES = {"train": "train.tsv", "validation": "dev.tsv"}
    HOMEPAGE = "https://gluebenchmark.com/tasks"

    def parse(self, path):
        for i, row in enumerate(_csv_rows(path, delimiter="\t")):
            _need(row, ("sentence", "label"), path, i)
            yield {"sentence": row["sentence"].strip(), "label": int(row["label"])}


AG_NEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]


class SafegeneAgNews(_SafegeneBuilder):
    """AG News topic classification: text and one of World, Sports, Business, Sci/Tech."""

    FEATURES = {"text": tfds.features.Text(), "label": tfds.features.ClassLabel(names=AG_NEWS_LABELS)}
    FILES = {"validation": "dev.tsv", "test": "test.tsv"}
    HOMEPAGE = "http://groups.di.unipi.it/~gulli/AG_corpus_of_news_articles.html"

    def parse(self, path):
        csv.field_size_limit(1 << 24)
        for i, row in enumerate(_csv_rows(path, fieldnames=["text", "label"], delimiter="\t")):
            _need(row, ("text", "label"), path, i)
            if row["label"] not in AG_NEWS_LABELS:
                raise DataError(f"{path}: record {i} has label {row['label']!r}; expected one of {AG_NEWS_LABELS}")
            yield {"text": row["text"], "label": row["label"]}


class SafegeneAlpaca(_SafegeneBuilder):
    """Alpaca instructions (Taori et al. 2023): instruction, input, output."""

    FEATURES = _text("instruction", "input", "output")
    FILES = {"train": "alpaca_data_1k.json"}
    URLS = {"train": f"{_GH}/tatsu-lab/stanford_alpaca/main/alpaca_data.json"}
    HOMEPAGE = "https://github.com/tatsu-lab/stanford_alpaca"

    def parse(self, path):
        return _instruction_rows(path)


BUILDERS: dict[str, tuple[type[_SafegeneBuilder], str | None, str]] = {
    # name: (builder, config, shared/data folder it reads offline)
    "advbench": (SafegeneAdvbench, None, "advbench"),
    "harmbench": (SafegeneHarmbench, None, "harmbench"),
    "jailbreakbench": (SafegeneJailbreakbench, None, "jailbreakbench"),
    "xstest": (SafegeneXstest, None, "xstest"),
    "safety_tuned_llamas": (SafegeneSafetyTunedLlamas, None, "safety_tuned_llamas"),
    **{
        f"safety_tuned_llamas/{n}": (SafegeneSafetyEval, n.lower().replace("-", "_"), "safety_tuned_llamas/evaluation")
        for n in EVAL_SETS
    },
    "hh_rlhf_harmless": (SafegeneHhRlhfHarmless, None, "hh_rlhf_harmless_base"),
    "gsm8k": (SafegeneGsm8k, None, "gsm8k"),
    "sst2": (SafegeneSst2, None, "sst2"),
    "ag_news": (SafegeneAgNews, None, "ag_news"),
    "alpaca": (SafegeneAlpaca, None, "alpaca_1k_sample"),
}
"""Config names -> (builder class, builder config, folder name under a shared data root)."""
