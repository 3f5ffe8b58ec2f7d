"""Chat formatting: the model's chat template, response-only loss masks, batching and length bucketing.

Example (with any transformers tokenizer that has a chat template)::

    ex = encode_example(tok, "What is 2 + 2?", "4")
    ex.input_ids, ex.loss_mask          # the mask is 1 on the response tokens (and the end-of-turn) only
    batch = batch_examples([ex], max_length=64, pad_id=tok.pad_token_id)
"""

from __future__ import annotations

import dataclasses
import random
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from safegene_jax.core.errors import PromptTooLongError, SafeGeneError


@dataclasses.dataclass(frozen=True)
class Example:
    """Token ids of one conversation and a 0/1 mask of the tokens the loss is taken on."""

    input_ids: tuple[int, ...]
    loss_mask: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.input_ids)


def _messages(instruction: str, system: str | None, response: str | None = None) -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system else []
    msgs.append({"role": "user", "content": instruction})
    if response is not None:
        msgs.append({"role": "assistant", "content": response})
    return msgs


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_prompt(tokenizer: Any, instruction: str, system: str | None = None) -> str:
    """The text a model sees before answering: the chat template with the generation prompt, or the raw
    instruction and a newline for tokenizers without a template."""
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(_messages(instruction, system), tokenize=False, add_generation_prompt=True)
    return f"{system + chr(10) if system else ''}{instruction}\n"


def encode_prompt(tokenizer: Any, instruction: str, system: str | None = None) -> list[int]:
    """Token ids of :func:`chat_prompt` (special tokens come from the template, none are added)."""
    ids = tokenizer.encode(chat_prompt(tokenizer, instruction, system), add_special_tokens=False)
    if not has_chat_template(tokenizer) and getattr(tokenizer, "bos_token_id", None) is not None:
        ids = [tokenizer.bos_token_id] + ids
    return ids


def encode_example(tokenizer: Any, instruction: str, response: str, system: str | None = None) -> Example:
    """A (prompt, response) pair as token ids with the loss mask on the response only.

    With a chat template the whole conversation is rendered by it (so the assistant's end-of-turn tokens
    are learned); the prompt part is whatever the template renders before the response.
    """
    prompt = encode_prompt(tokenizer, instruction, system)
    if has_chat_template(tokenizer):
        full_text = tokenizer.apply_chat_template(_messages(instruction, system, response), tokenize=False)
        full = tokenizer.encode(full_text, add_special_tokens=False)
        if full[: len(prompt)] == prompt and len(full) > len(prompt):
            return Example(tuple(full), tuple([0] * len(prompt) + [1] * (len(full) - len(prompt))))
    answer = tokenizer.encode(response, add_special_tokens=False)
    eos = [tokenizer.eos_token_id] if getattr(tokenizer, "eos_token_id", None) is not None else []
    ids = prompt + answer + eos
    return Example(tuple(ids), tuple([0] * len(prompt) + [1] * (len(answer) + len(eos))))


def encode_prompts(
    tokenizer: Any, instructions: Sequence[str], max_length: int, system: str | None = None
) -> list[list[int]]:
    """Prompt token ids for generation; raises if one is longer than ``max_length``."""
    out = []
    for i, text in enumerate(instructions):
        ids = encode_prompt(tokenizer, text, system)
        if len(ids) > max_length:
            raise PromptTooLongError(
                f"prompt {i} has {len(ids)} tokens, more than max_length={max_length}: {text[:60]!r}..."
            )
        out.append(ids)
    return out


def batch_examples(
    examples: Sequence[Example], *, max_length: int, pad_id: int, overflow: str = "error", pad_to_multiple: int = 8
) -> dict[str, np.ndarray]:
    """Right-padded ``tokens``, ``attention_mask`` and ``loss_mask`` arrays ``(B, T)``.

    ``T`` is the longest example rounded up to ``pad_to_multiple`` (at most ``max_length``). An example
    longer than ``max_length`` raises with ``overflow='error'``, or is cut to fit with a warning with
    ``overflow='truncate'``.
    """
    if overflow not in ("error", "truncate"):
        raise SafeGeneError(f"overflow must be 'error' or 'truncate', got {overflow!r}")
    if not examples:
        raise SafeGeneError("cannot batch an empty list of examples")
    rows = []
    for i, ex in enumerate(examples):
        ids, mask = list(ex.input_ids), list(ex.loss_mask)
        if len(ids) > max_length:
            if overflow == "error":
                raise PromptTooLongError(
                    f"example {i} has {len(ids)} tokens, more than max_length={max_length}; "
                    "raise max_length or pass overflow='truncate'"
                )
            warnings.warn(f"example {i} truncated from {len(ids)} to {max_length} tokens", stacklevel=2)
            ids, mask = ids[:max_length], mask[:max_length]
            if not any(mask):
                warnings.warn(f"example {i} has no response token left after truncation", stacklevel=2)
        rows.append((ids, mask))
    longest = max(len(ids) for ids, _ in rows)
    length = min(max_length, -(-longest // pad_to_multiple) * pad_to_multiple)
    tokens = np.full((len(rows), length), pad_id, np.int32)
    attention = np.zeros((len(rows), length), np.int32)
    loss = np.zeros((len(rows), length), np.int32)
    for r, (ids, mask) in enumerate(rows):
        tokens[r, : len(ids)] = ids
        attention[r, : len(ids)] = 1
        loss[r, : len(ids)] = mask
    return {"tokens": tokens, "attention_mask": attention, "loss_mask": loss}


def length_buckets(lengths: Sequence[int], batch_size: int, *, seed: int = 0, shuffle: bool = True) -> list[list[int]]:
    """Index batches of similar lengths (less padding): sorted by length, chunked, batch order shuffled.

    Example:
        >>> length_buckets([5, 50, 6, 49], 2, shuffle=False)
        [[0, 2], [3, 1]]
    """
    if batch_size < 1:
        raise SafeGeneError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle:
        random.Random(seed).shuffle(batches)
    return batches
