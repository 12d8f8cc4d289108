"""Benchmarks (`make bench`). Each ``bench_*.py`` module has ``run() -> dict`` and is recorded by the runner."""
