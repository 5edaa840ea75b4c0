"""A simulated web shop with hidden ground truth, chaos helpers and benchmarks."""
