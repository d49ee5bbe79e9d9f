"""Benchmarks: retrieval and answer quality (``python -m bench.quality``)."""
