"""Datasets: TFDS builders without TensorFlow, the embedded default data, and chat formatting.

>>> from safegene_jax import data
>>> data.load("embedded/harmful", split="probe")[0]["category"]
'cyber'
"""

from safegene_jax.data.builders import DataError
from safegene_jax.data.chat import (
    Example,
    PromptTooLongError,
    batch_examples,
    chat_prompt,
    encode_example,
    encode_prompt,
    encode_prompts,
    length_buckets,
)
from safegene_jax.data.registry import Records, load, names
from safegene_jax.data.tasks import extract_answer

__all__ = [
    "DataError",
    "Example",
    "PromptTooLongError",
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
]
