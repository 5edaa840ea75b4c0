"""The answer a text model last gave, kept until the model learns.

The worker scores a labelled ticket, then learns from it, and learning scores the same text
again for the progressive metrics (sentiment once more, triage twice). VADER and the naive
Bayes are most of a ticket's cost, so each model keeps its last answer, keyed by the text
and by how many examples it had learnt: any lesson changes the count, and with it the key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["answer_until_learnt"]

T = TypeVar("T")


def answer_until_learnt(model: Any, slot: str, text: str, answer: Callable[[str], T]) -> T:
    """``answer(text)``, or what it returned last, if that was for ``text`` and the model
    has learnt nothing since (``model.example_count``). Kept in ``model.<slot>`` (a model
    restored from a checkpoint written before has none yet).

    >>> class Model:
    ...     example_count = 0
    >>> model, calls = Model(), []
    >>> def answer(text):
    ...     calls.append(text)
    ...     return len(text)
    >>> [answer_until_learnt(model, "_kept", "abc", answer) for _ in range(2)], calls
    ([3, 3], ['abc'])
    >>> model.example_count = 1  # it learnt: asked again
    >>> answer_until_learnt(model, "_kept", "abc", answer), calls
    (3, ['abc', 'abc'])
    """
    key = (text, model.example_count)
    kept = getattr(model, slot, None)
    if kept is None or kept[0] != key:
        kept = (key, answer(text))
        setattr(model, slot, kept)
    return kept[1]  # type: ignore[no-any-return]
