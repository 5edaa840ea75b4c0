"""Which requests the profile read's fast path (api.fast_path) takes; that it answers them as
the routed endpoint does is in tests/integration/test_api_fast_path.py."""

from __future__ import annotations

from api.fast_path import plain_customer_id


def test_only_plain_profile_reads_take_the_fast_path() -> None:
    """Verify which requests the fast path takes and which it leaves to the router."""
    plain = {"type": "http", "method": "GET", "root_path": "", "path": "/v1/customers/c1"}
    assert plain_customer_id(plain) == "c1"
    assert plain_customer_id({**plain, "path": "/v1/customers/" + "x" * 200}) == "x" * 200
    for other in ({"method": "HEAD"}, {"method": "DELETE"}, {"root_path": "/crm"},
                  {"path": "/v1/customers/"}, {"path": "/v1/customers/at-risk"},
                  {"path": "/v1/customers/c1/recommendations"},
                  {"path": "/v1/customers/" + "x" * 201}, {"path": "/v1/segments"},
                  {"type": "websocket"}):
        assert plain_customer_id({**plain, **other}) is None, other
