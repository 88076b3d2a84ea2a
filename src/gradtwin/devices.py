"""Device and dtype choice: one place that turns '--device auto' into a torch device."""

from __future__ import annotations

import os
import platform
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from gradtwin.errors import UsageError

DTYPES = {"float32": (np.float32, torch.float32), "float64": (np.float64, torch.float64)}
# The gradient checker also runs in half precision; training does not. NumPy has no bfloat16.
HALF = {"float16": (np.float16, torch.float16), "bfloat16": (None, torch.bfloat16)}
CHECK_DTYPES = {**DTYPES, **HALF}
DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"


def numpy_dtype(dtype: str, half: bool = False) -> type[np.floating]:
    """The NumPy dtype for 'float32' or 'float64' (with `half`, 'float16'; bfloat16 has none)."""
    found = CHECK_DTYPES[check_dtype(dtype, half)][0]
    if found is None:
        raise UsageError(f"dtype {dtype!r} has no NumPy type: pass the hand gradients as torch tensors")
    return found  # type: ignore[return-value]


def torch_dtype(dtype: str, half: bool = False) -> torch.dtype:
    """The torch dtype for 'float32' or 'float64' (with `half`, 'float16' and 'bfloat16' too)."""
    return CHECK_DTYPES[check_dtype(dtype, half)][1]


def check_dtype(dtype: str, half: bool = False) -> str:
    """Return `dtype` if it is a supported name (with `half`: float16 and bfloat16 too), else raise."""
    choices = CHECK_DTYPES if half else DTYPES
    if dtype not in choices:
        raise UsageError(f"dtype must be one of {', '.join(choices)}; got {dtype!r}")
    return dtype


def resolve_device(name: str, dtype: str = "float64", half: bool = False) -> torch.device:
    """'auto' -> cuda if available else cpu; refuse devices that cannot run `dtype`.

    mps (Apple GPUs) has no float64 arithmetic, so float64 there is refused up front
    rather than failing inside a kernel. `half` admits float16 and bfloat16 (the checker's).
    """
    check_dtype(dtype, half)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match:
        if not torch.cuda.is_available():
            raise UsageError(f"device {name!r} requested but {cuda_missing()}")
        index = int(match.group(1) or 0)
        if index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise UsageError(f"device {name!r} requested but only {count} CUDA device(s) exist")
        if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
            raise UsageError(f"device {name!r} has no bfloat16 support; use --dtype float16 or float32")
        return torch.device("cuda", index)
    if name == "mps":
        if dtype == "float64":
            raise UsageError("device 'mps' has no float64 support; use --dtype float32")
        if not torch.backends.mps.is_available():
            raise UsageError("device 'mps' requested but MPS is not available here")
        return torch.device("mps")
    raise UsageError(f"device must be one of {DEVICE_FORMS}; got {name!r}")


def cpu_name() -> str:
    """The processor's model name (Linux's /proc/cpuinfo), else what `platform` knows, for benchmark reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def nvidia_driver() -> bool:
    """Whether this machine has an NVIDIA driver: the kernel module's file, or `nvidia-smi` on the PATH."""
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def cuda_missing() -> str:
    """Why CUDA is not available, for an error: a CPU-only torch build on a machine with a driver says so."""
    if torch.version.cuda is None and nvidia_driver():
        return (
            f"this torch ({torch.__version__}) is a CPU-only build on a machine with an NVIDIA driver; "
            "install the CUDA build of the same version with: make gpu"
        )
    return "CUDA is not available here"


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so that a wall clock measures finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
