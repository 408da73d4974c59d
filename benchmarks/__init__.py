"""Benchmarks: ``python -m benchmarks`` (over HTTP, see README.md) and in-process ``bench_*.py`` scripts."""
