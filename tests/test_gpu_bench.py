"""The GPU benchmark's code path, run at toy sizes on the cpu (times are not asserted)."""

from __future__ import annotations

import importlib.util
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import CLASSIFIERS, CUDA
from gradtwin.models import MODELS

ROOT = Path(__file__).resolve().parents[1]


def _load_throughput() -> Any:
    """comparisons/throughput.py by path, under the name gpu_bench.py imports it by (so both share it)."""
    spec = importlib.util.spec_from_file_location("throughput", ROOT / "comparisons" / "throughput.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["throughput"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


throughput: Any = _load_throughput()


def test_bench_runs_tiny_on_cpu_and_writes_its_table(tmp_path: Path) -> None:
    bench = runpy.run_path(str(ROOT / "comparisons" / "gpu_bench.py"))
    assert bench["main"](["--tiny", "--device", "cpu", "--out", str(tmp_path)]) == 0
    (table,) = tmp_path.glob("gpu_bench_*.md")
    rows = [line for line in table.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    for name in bench["BENCHED_MODELS"]:
        for engine in [e for e in bench["BENCHED_ENGINES"] if throughput.applies(e, MODELS[name])]:
            mine = [r for r in rows if r.startswith(f"| {name} | {engine} |")]
            assert mine, f"no row for {name} {engine}"
            assert all("failed" not in r and "memory" not in r for r in mine), mine


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_bench_problem_gives_int64_labels_and_parameters_for_every_class(name: str) -> None:
    """Labels as engines keep them (int64), all of them inside the parameters' classes."""
    prob = throughput.problem(MODELS[name], 300, 16, "float32", torch.device("cpu"), seed=1)
    assert prob.X.dtype == torch.float32 and prob.Y.dtype == torch.int64
    k = 2 if name == "logistic" else prob.params["b" if name == "softmax" else "b2"].shape[0]
    labels = np.unique(prob.Y.numpy())
    assert labels.min() >= 0 and labels.max() == k - 1, (labels, k)


@pytest.mark.skipif(CUDA, reason="checks the behaviour without CUDA")
def test_gpu_check_without_cuda_says_so_and_exits_0() -> None:
    run = subprocess.run(
        ["bash", str(ROOT / "comparisons" / "gpu_check.sh")],
        capture_output=True,
        text=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines() == [
        "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing run"
    ]


@pytest.mark.skipif(CUDA, reason="checks the behaviour without CUDA")
@pytest.mark.parametrize("require", [False, True])
def test_gpu_check_that_should_have_a_gpu_fails_having_run_nothing(tmp_path: Path, require: bool) -> None:
    """An NVIDIA driver (here a stand-in nvidia-smi) with a torch that cannot use it, or GPU_CHECK_REQUIRE=1:
    exit 1, never a green run that checked nothing."""
    env = {"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}
    if require:
        env["GPU_CHECK_REQUIRE"] = "1"
    else:
        smi = tmp_path / "nvidia-smi"
        smi.write_text("#!/bin/sh\nexit 0\n")
        smi.chmod(0o755)
        env["PATH"] = f"{tmp_path}:{env['PATH']}"
    run = subprocess.run(
        ["bash", str(ROOT / "comparisons" / "gpu_check.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    assert run.returncode == 1, (run.stdout, run.stderr)
    said = (run.stdout + run.stderr).strip()
    assert said.endswith("nothing run"), said
    if not require and torch.version.cuda is None:
        assert "is a CPU-only build on a machine with an NVIDIA driver" in said and "make gpu" in said, said


def test_make_gpu_installs_the_pinned_torch_and_refuses_the_cpu_build() -> None:
    pin = next(line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("torch=="))
    version = pin.removeprefix("torch==")
    run = subprocess.run(["make", "-n", "gpu"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert f'"torch=={version},!={version}+cpu"' in run.stdout and "--force-reinstall" in run.stdout
    assert "assert torch.version.cuda" in run.stdout
