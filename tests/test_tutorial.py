"""The tutorial notebook: kept in git without outputs, executed cell by cell, and what it finds checked."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "tutorial.ipynb"
KERNEL = "gradtwin-tests"  # a kernel spec of our own, so that no user-wide "python3" spec is picked instead


def test_the_committed_notebook_is_valid_and_has_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=nbformat.NO_CONVERT)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    code = [(i, cell) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    assert code, "the notebook has no code cells"
    for i, cell in code:
        assert cell.outputs == [], f"cell {i} ({cell.id}) is committed with outputs: clear them"
        assert cell.execution_count is None, f"cell {i} ({cell.id}) is committed with an execution count"
    assert all("ExecuteTime" not in cell.metadata and "execution" not in cell.metadata for _, cell in code)


def _kernel(tmp: Path) -> KernelManager:
    """A kernel on this very interpreter (the venv's python, where gradtwin is installed)."""
    spec = tmp / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    specs = KernelSpecManager(kernel_dirs=[str(tmp / "kernels")])
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


def _summary(nb: Any) -> dict[str, Any]:
    """The JSON the last code cell prints: what the notebook found."""
    last = [cell for cell in nb.cells if cell.cell_type == "code"][-1]
    text = "".join(out.get("text", "") for out in last.outputs if out.output_type == "stream" and out.name == "stdout")
    summary: dict[str, Any] = json.loads(text)
    return summary


def test_the_notebook_runs_and_finds_what_it_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One run (so that pytest-xdist never runs it twice), from a scratch folder; a cell that raises fails here."""
    # the kernel's connection file and IPython's history go to the scratch folder, not the user's home
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, km=_kernel(tmp_path), timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.execution_count is not None, f"cell {i} ({cell.id}) did not run"
    summary = _summary(nb)

    # section 1: the article's -2 climbs the loss, the corrected +2 descends
    assert summary["article_step_uphill"] is True
    # section 2: the twins agree at every one of the 301 recorded iterations, far inside the drift bound
    assert summary["iterations"] == 300 and summary["twins_agree"] is True
    assert 0 < summary["largest_share_of_drift_bound"] < 0.1
    # section 3: the article's gradient is caught and named; the corrected one passes
    assert summary["article_check_ok"] is False and "opposite sign" in summary["article_diagnosis"]
    assert summary["fixed_check_ok"] is True
    # section 4: dL/dZ1 = dL/dH * (1 - H) for (1 - H**2): dL/dpred and dL/dH agree, dL/dZ1 is the first wrong step
    assert summary["planted_steps_ok"] is False and summary["planted_wrong_steps"] == ["Z1"]
    assert summary["first_wrong"] == "dL/dH agrees; dL/dZ1 does not: the mistake is in the step from H to Z1"
    assert summary["correct_steps_ok"] is True and summary["correct_first_wrong"] is None
    assert summary["explain_ok"] is True
