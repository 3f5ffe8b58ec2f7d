"""How close a prompt written for the project is to a public one: the share of (crudely stemmed) content words
two prompts have in common, over their union. The embedded prompt sets are checked against the held-out public
sets with it."""

from __future__ import annotations

import re
from collections.abc import Iterable

_STOP = set(
    "the a an to of in do i how what is my can why where s for on and at does should be are not what's can't best "
    "way you your it with from that this me we our some get would could who which when there their they he she "
    "his her its so as by or if about".split()
)


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > 4 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    """Content words, crudely stemmed ("stealing" and "steal" are one word)."""
    return {_stem(w) for w in re.findall(r"[a-z0-9']+", text.lower())} - _STOP


def closeness(prompt: str, others: Iterable[str]) -> float:
    """The largest share of content words ``prompt`` has in common with one of ``others``, over their union."""
    a = content_words(prompt)
    return max(len(a & content_words(x)) / len(a | content_words(x)) for x in others)
