"""Benchmarks: ``python -m bench.<name>``; each prints its figures as a JSON last line."""
