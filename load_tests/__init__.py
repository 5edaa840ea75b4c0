"""Benchmarks of the product (throughput, latency, model quality) and their reports; chaos
helpers for the tests. Not shipped in the wheel: run from a source checkout."""
