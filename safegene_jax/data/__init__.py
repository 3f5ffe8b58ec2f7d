"""Datasets: TFDS builders without TensorFlow, the embedded default data, and chat formatting.

Importing this package does not import TFDS: the public datasets' builders load when :func:`load` first
needs one.

>>> from safegene_jax import data
>>> data.load("embedded/harmful", split="probe")[0]["category"]
'cyber'
"""

from safegene_jax.data.chat import (
    Example,
    batch_examples,
    chat_prompt,
    encode_example,
    encode_prompt,
    encode_prompts,
    length_buckets,
)
from safegene_jax.data.registry import Records, load, names
from safegene_jax.data.task_sets import TASK_SETS, task_records
from safegene_jax.data.tasks import extract_answer

__all__ = [
    "TASK_SETS",
    "Example",
    "Records",
    "batch_examples",
    "chat_prompt",
    "encode_example",
    "encode_prompt",
    "encode_prompts",
    "extract_answer",
    "length_buckets",
    "load",
    "names",
    "task_records",
]
