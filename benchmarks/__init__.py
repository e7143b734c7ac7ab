"""Chancy's benchmarks: run them all with `python benchmarks/run.py` (see benchmarks/README.md).

Nothing here is a test: the figures depend on the machine and are never asserted.
"""
