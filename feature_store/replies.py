"""Small helpers for Redis replies (the clients run without ``decode_responses``)."""

from __future__ import annotations

#: How many of a customer's categories a profile shows (strongest first).
TOP_CATEGORIES = 5


def text(value: bytes | str) -> str:
    """Redis replies are bytes (no ``decode_responses``): decode one to text.

    >>> text(b"c1"), text("c1")
    ('c1', 'c1')
    """
    return value.decode() if isinstance(value, bytes) else value
