"""Benchmarks: each module prints one JSON object per line (`make bench` runs them all)."""
