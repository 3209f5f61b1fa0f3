"""Benchmarks: `make bench` runs them all (`python -m bench.run`) and writes bench/results/."""
