"""Benchmarks: ``python -m benchmarks.bench_embed`` and ``python -m benchmarks.bench_rerank``."""
