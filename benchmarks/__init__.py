"""Benchmarks for mscomm_sync, run with ``make bench`` (``python -m benchmarks``).

Each module measures our code beside a baseline taken in the same run and
prints ratios, so the figures mean something on any machine.
"""
