"""Device and dtype choice: one place that turns '--device auto' into a torch device."""

from __future__ import annotations

import re

import numpy as np
import torch

from gradtwin.errors import UsageError

DTYPES = {"float32": (np.float32, torch.float32), "float64": (np.float64, torch.float64)}
DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"


def numpy_dtype(dtype: str) -> type[np.floating]:
    """The NumPy dtype for 'float32' or 'float64'."""
    return DTYPES[check_dtype(dtype)][0]  # type: ignore[return-value]


def torch_dtype(dtype: str) -> torch.dtype:
    """The torch dtype for 'float32' or 'float64'."""
    return DTYPES[check_dtype(dtype)][1]


def check_dtype(dtype: str) -> str:
    """Return `dtype` if it is a supported name, else raise naming the choices."""
    if dtype not in DTYPES:
        raise UsageError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    return dtype


def resolve_device(name: str, dtype: str = "float64") -> torch.device:
    """'auto' -> cuda if available else cpu; refuse devices that cannot run `dtype`.

    mps (Apple GPUs) has no float64 arithmetic, so float64 there is refused up front
    rather than failing inside a kernel.
    """
    check_dtype(dtype)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match:
        if not torch.cuda.is_available():
            raise UsageError(f"device {name!r} requested but CUDA is not available here")
        index = int(match.group(1) or 0)
        if index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise UsageError(f"device {name!r} requested but only {count} CUDA device(s) exist")
        return torch.device("cuda", index)
    if name == "mps":
        if dtype == "float64":
            raise UsageError("device 'mps' has no float64 support; use --dtype float32")
        if not torch.backends.mps.is_available():
            raise UsageError("device 'mps' requested but MPS is not available here")
        return torch.device("mps")
    raise UsageError(f"device must be one of {DEVICE_FORMS}; got {name!r}")


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so that a wall clock measures finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
