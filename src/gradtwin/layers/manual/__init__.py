"""The layers' hand-derived twins: forward and backward, NumPy (array API)."""
