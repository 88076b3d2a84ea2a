"""The README's examples, run as written: the demo's table, every Python block, the one-machine commands."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gradtwin.cli import main
from gradtwin.training.launch import launch

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BIN = Path(sys.executable).parent


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n#", start + len(title))
    return README[start : end if end >= 0 else None]


def test_make_demo_prints_the_table_the_readme_shows(capsys: pytest.CaptureFixture[str]) -> None:
    """`make demo` runs `gradtwin compare`; every line but the times is as the README shows it."""
    shown = re.search(r"and prints:\n\n```\n(.*?)```", README, re.S)
    assert shown is not None
    assert main(["compare"]) == 0
    printed = capsys.readouterr().out

    def steady(text: str) -> list[str]:
        return [line for line in text.strip().splitlines() if not line.startswith("time / iteration")]

    assert steady(printed) == steady(shown.group(1))


PYTHON = [block for block in _blocks("python") if not block.startswith("# train_parallel.py")]


@pytest.mark.parametrize("code", PYTHON, ids=[block.splitlines()[0][:40] for block in PYTHON])
def test_every_python_example_runs(code: str) -> None:
    """Each example runs, and what it computes is what the README says it is."""
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    if "report" in namespace:  # the checker's example: a correct hand gradient agrees
        assert namespace["report"].ok, namespace["report"]
    elif "reg" in namespace:  # the estimator's example: a finished, finite fit
        reg = namespace["reg"]
        assert reg.n_iter_ >= 1 and np.all(np.isfinite(reg.coef_)) and np.isfinite(reg.loss_curve_[-1])
    else:
        pytest.fail(f"no expectation for the README example starting {code.splitlines()[0]!r}: add one here")


def test_the_data_parallel_script_runs_under_the_launcher(tmp_path: Path) -> None:
    (script,) = [block for block in _blocks("python") if block.startswith("# train_parallel.py")]
    path = tmp_path / "train_parallel.py"
    path.write_text(script + "\nassert result.stop_reason == 'iterations' and result.iterations == 1000\n")
    assert launch(2, [sys.executable, str(path)], limit=240) == 0


def _one_machine_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", _section("### One machine"), re.S)
    assert block is not None
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


@pytest.mark.parametrize(
    "command", [pytest.param(c, marks=pytest.mark.cuda) if "cuda" in c.split() else c for c in _one_machine_commands()]
)
def test_the_one_machine_commands_run_as_written(command: str) -> None:
    words = command.split()
    gpus = int(words[words.index("--nproc") + 1]) if "cuda" in words and "--nproc" in words else 0
    if gpus > torch.cuda.device_count():
        pytest.skip(f"the README's command needs {gpus} GPUs; {torch.cuda.device_count()} here")
    if words[0] not in ("gradtwin", "torchrun") or shutil.which(words[0], path=str(BIN)) is None:
        pytest.fail(f"the README runs {words[0]!r}, which this environment does not install")
    done = subprocess.run(
        [str(BIN / words[0]), *words[1:]], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stderr
    assert "45.16003002" in done.stdout and "152.1334842" in done.stdout, done.stdout  # the least-squares w, b
    assert "Traceback" not in done.stderr
