"""API key scopes; keys, tenants and rate limits on Redis are in
tests/integration/test_api_auth.py."""

from __future__ import annotations

import pytest

from api.keys import parse_scopes


def test_scopes_are_checked_when_a_key_is_made() -> None:
    """Verify that unknown or empty scopes are refused."""
    assert parse_scopes("read,admin") == {"read", "admin"}
    with pytest.raises(ValueError):
        parse_scopes("read,superuser")
    with pytest.raises(ValueError):
        parse_scopes("")
