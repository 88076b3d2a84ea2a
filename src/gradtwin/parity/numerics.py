"""Reproducible GPU numerics for parity checks: TF32 off, deterministic kernels, remainder measured.

TF32 rounds matmul inputs to a 10-bit mantissa (u = 2^-11), far outside the float32 bound
that parity checks derive, so it is switched off while they run. Deterministic algorithms
are requested where torch has them; whatever stays nondeterministic (atomics in some
reductions) is measured by running the same computation twice and comparing bit for bit.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

# cuBLAS needs a fixed workspace to be deterministic (CUDA >= 10.2); torch refuses otherwise.
CUBLAS_WORKSPACE = ":4096:8"


@contextmanager
def strict_numerics() -> Iterator[None]:
    """TF32 off, float32 matmuls at 'highest' precision, deterministic algorithms on; restored after."""
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    if saved[5] is None:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[0], saved[1]
        torch.set_float32_matmul_precision(saved[2])
        torch.use_deterministic_algorithms(saved[3], warn_only=saved[4])
        if saved[5] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def _flatten(value: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """A result (array, scalar, dict or tuple of them) as name -> float64 NumPy array."""
    if isinstance(value, dict):
        return {k2: v2 for k, v in value.items() for k2, v2 in _flatten(v, f"{prefix}{k}.").items()}
    if isinstance(value, (tuple, list)):
        return {k2: v2 for i, v in enumerate(value) for k2, v2 in _flatten(v, f"{prefix}{i}.").items()}
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return {prefix.rstrip("."): np.asarray(value, dtype=np.float64)}


def nondeterminism(fn: Callable[[], Any], runs: int = 2) -> dict[str, float]:
    """Largest |difference| of each output of `fn` between the first and each later run.

    0.0 means bit-for-bit equal (NaN equal to NaN at the same place); anything else is the
    nondeterministic remainder, which a caller bounds by the rounding tolerance: two runs
    that sum in different orders may differ by twice gamma(K) * sum|terms|, no more.
    """
    first = _flatten(fn())
    worst = dict.fromkeys(first, 0.0)
    for _ in range(runs - 1):
        again = _flatten(fn())
        for k, a in first.items():
            b = again[k]
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            diff = np.where(same, 0.0, np.abs(a - b))
            worst[k] = max(worst[k], float(np.nan_to_num(diff, nan=np.inf).max(initial=0.0)))
    return worst
