"""Downstream tasks with exactly checkable answers, generated reproducibly from a seed.

* ``arithmetic``: two-step word problems; the answer is one integer ("The answer is 17.").
* ``sentiment``: short product and film reviews; the answer is ``positive`` or ``negative``.

Example:
    >>> rec = arithmetic(1, seed=0)[0]
    >>> sorted(rec)
    ['answer', 'instruction', 'label', 'response']
    >>> rec["response"] == f"The answer is {rec['answer']}."
    True
"""

from __future__ import annotations

import random
import re

from safegene_jax.core.errors import DataError

_NAMES = ["Lena", "Omar", "Priya", "Tom", "Aiko", "Mateo", "Zoe", "Kwame", "Ines", "Liam", "Sara", "Yuki"]
_ITEMS = ["apples", "marbles", "stickers", "books", "shells", "coins", "pencils", "cookies", "stamps", "cards"]
_GIVE = ["gives {x} to a friend", "loses {x}", "eats {x}", "sells {x}", "donates {x} to school"]
_GET = ["buys {y} more", "finds {y} more", "gets {y} as a gift", "wins {y} more", "collects {y} more"]


def arithmetic(n: int, seed: int = 0) -> list[dict]:
    """``n`` word problems ``start - x + y`` (or ``start * k - x``) with integer answers."""
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
        if rng.random() < 0.6:
            start, x, y = rng.randint(10, 60), rng.randint(1, 9), rng.randint(2, 30)
            give, get = rng.choice(_GIVE).format(x=x), rng.choice(_GET).format(y=y)
            question = f"{name} has {start} {item}. {name} {give} and then {get}. How many {item} does {name} have now?"
            answer = start - x + y
        else:
            boxes, per, x = rng.randint(2, 9), rng.randint(3, 12), rng.randint(1, 9)
            question = (
                f"{name} has {boxes} boxes with {per} {item} in each box and gives away {x} {item}. "
                f"How many {item} are left?"
            )
            answer = boxes * per - x
        if question not in seen:
            seen.add(question)
            out.append(
                {
                    "instruction": question,
                    "response": f"The answer is {answer}.",
                    "answer": str(answer),
                    "label": "arithmetic",
                }
            )
    return out


_SUBJECTS = [
    "this blender",
    "the movie",
    "this phone case",
    "the hotel",
    "this novel",
    "the new album",
    "this backpack",
    "the restaurant",
    "this video game",
    "the headphones",
    "this coffee maker",
    "the show",
]
_POSITIVE = [
    "wonderful",
    "excellent",
    "a delight",
    "fantastic",
    "really well made",
    "worth every penny",
    "brilliant",
    "charming",
    "impressive",
    "a joy to use",
]
_NEGATIVE = [
    "terrible",
    "a waste of money",
    "disappointing",
    "poorly made",
    "boring",
    "awful",
    "broken after a week",
    "frustrating",
    "overpriced and flimsy",
    "a letdown",
]
_OPENERS = ["Honestly,", "I have to say", "After a month,", "In my opinion,", "Well,", "To be fair,", ""]
_ENDINGS = {
    "positive": ["I would recommend it.", "I'd buy it again.", "Five stars.", "Loved it."],
    "negative": ["I would not recommend it.", "I want a refund.", "One star.", "Never again."],
}


def sentiment(n: int, seed: int = 0) -> list[dict]:
    """``n`` short reviews, half positive and half negative, with the label as the answer."""
    rng = random.Random(seed + 10_000)
    out, seen = [], set()
    while len(out) < n:
        label = "positive" if len(out) % 2 == 0 else "negative"
        adj = rng.choice(_POSITIVE if label == "positive" else _NEGATIVE)
        review = " ".join(
            w for w in (rng.choice(_OPENERS), f"{rng.choice(_SUBJECTS)} was {adj}.", rng.choice(_ENDINGS[label])) if w
        )
        review = review[0].upper() + review[1:]
        if review in seen:
            continue
        seen.add(review)
        out.append(
            {
                "instruction": f"Is the sentiment of this review positive or negative?\nReview: {review}",
                "response": label,
                "answer": label,
                "label": "sentiment",
            }
        )
    rng.shuffle(out)
    return out


TASKS = {"arithmetic": arithmetic, "sentiment": sentiment}
"""Task name -> generator ``(n, seed) -> records``."""


def extract_answer(task: str, text: str) -> str:
    """The answer a model's response gives: the last integer (arithmetic) or the first label word (sentiment).

    Example:
        >>> extract_answer("arithmetic", "3 + 4 = 7, so the answer is 7.")
        '7'
        >>> extract_answer("sentiment", "Negative. The reviewer is unhappy.")
        'negative'
    """
    if task == "arithmetic":
        numbers = re.findall(r"-?\d+", text.replace(",", ""))
        return numbers[-1] if numbers else ""
    if task == "sentiment":
        m = re.search(r"\b(positive|negative)\b", text.lower())
        return m.group(1) if m else ""
    raise DataError(f"unknown task {task!r}; known: {sorted(TASKS)}")
