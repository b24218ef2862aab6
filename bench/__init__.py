"""Benchmarks: each prints a ratio against a named baseline, measured in one run."""
