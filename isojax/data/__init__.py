"""Numeric data: Gaussian-process kernel bank, a log-linear teacher with known next-token law, real series."""
