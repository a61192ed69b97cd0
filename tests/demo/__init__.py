"""Tests of the ``make demo`` walkthrough (``python -m mscomm_sync.demo``)."""
