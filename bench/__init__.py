"""Benchmarks (`make bench`): every number is a ratio against a baseline run
in the same process or on the same machine in the same run."""
