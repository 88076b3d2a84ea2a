"""Parity: rounding bounds, finite differences, comparisons and reports, the checker for your code."""
