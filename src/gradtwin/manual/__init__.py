"""Hand-derived twins: written against the array API, read and run with NumPy."""
