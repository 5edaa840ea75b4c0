"""How much decoding one event costs: orjson alone vs. our full codec (parse + validate).

Run ``python -m load_tests.bench_codec``; figures are per event, best of several repeats,
and the ratio to plain ``orjson.loads`` is what to compare across machines. It measures
``stream.codec`` itself, in this process (an exception the import-linter contract names).
"""

from __future__ import annotations

import timeit

import orjson

from stream.codec import decode

SAMPLES = {
    "click": b'{"event_id":"ev-1-123","customer_id":"cust-0042","session_id":"s-9",'
             b'"type":"click","kind":"product_view","product_id":"p-12","category":"books",'
             b'"occurred_at":"2026-01-01T10:00:00+00:00"}',
    "purchase": b'{"event_id":"ev-1-124","customer_id":"cust-0042","session_id":"s-9",'
                b'"type":"purchase","order_id":"o-1","items":[{"product_id":"p-12",'
                b'"quantity":2,"unit_price":19.99,"category":"books"}],"total":39.98,'
                b'"currency":"EUR","occurred_at":"2026-01-01T10:00:00+00:00"}',
    "ticket": b'{"event_id":"ev-1-125","customer_id":"cust-0042","type":"ticket",'
              b'"ticket_id":"t-1","status":"opened","channel":"email","subject":"Late",'
              b'"body":"My parcel is late again.","occurred_at":"2026-01-01T10:00:00+00:00"}',
}


def per_event_us(function: object, payload: bytes, number: int = 50_000) -> float:
    timer = timeit.Timer(lambda: function(payload))  # type: ignore[operator]
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def main() -> None:
    print("| event | orjson.loads µs | codec.decode µs | ratio |")
    print("|---|---:|---:|---:|")
    for name, payload in SAMPLES.items():
        assert not hasattr(decode(payload), "code"), f"{name} sample must be valid"
        baseline = per_event_us(orjson.loads, payload)
        full = per_event_us(decode, payload)
        print(f"| {name} | {baseline:.2f} | {full:.2f} | {full / baseline:.1f}x |")


if __name__ == "__main__":
    main()
