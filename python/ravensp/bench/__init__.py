"""Benchmarks (modules run with ``python -m ravensp.bench.<name>``), not tests."""
