"""Pictures of a comparison: both twins' loss curves and their difference per iteration."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from gradtwin.cli.files import atomic_write
from gradtwin.training.loop import TrainResult

if TYPE_CHECKING:
    from gradtwin.training.exact import Sweep


def plot_compare(manual: TrainResult, autograd: TrainResult, path: str | os.PathLike[str], force: bool = False) -> None:
    """Two panels: loss per iteration for each twin (log scale), and |manual - autograd|."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hm, ha = manual.history, autograd.history
    common, im, ia = np.intersect1d(hm.iteration, ha.iteration, return_indices=True)
    diff = np.abs(hm.loss[im] - ha.loss[ia])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, constrained_layout=True)
    top.plot(hm.iteration, hm.loss, label="manual (NumPy)", linewidth=2.5, alpha=0.6)
    top.plot(ha.iteration, ha.loss, label="autograd (PyTorch)", linestyle="--")
    top.set_yscale("log")
    top.set_ylabel("loss (MSE)")
    top.set_title(f"{manual.model}: both twins, {manual.dtype}, lr={manual.lr:g}")
    top.legend()
    shown = np.where(diff > 0, diff, np.nan)  # exact agreement has no place on a log axis
    bottom.plot(common, shown, ".", markersize=3)
    bottom.set_yscale("log")
    bottom.set_xlabel("iteration")
    bottom.set_ylabel("|loss manual - loss autograd|")
    exact = int(np.sum(diff == 0))
    bottom.set_title(f"difference per iteration ({exact} of {common.size} iterations identical, not drawn)")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110), force=force)
    plt.close(fig)


def plot_sweep(result: Sweep, title: str, path: str | os.PathLike[str], force: bool = False) -> None:
    """Final loss against learning rate (log-log), with 2/lambda_max and 2/(lambda_min+lambda_max) marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    finite = np.isfinite(result.final_loss)
    ax.plot(result.lrs[finite], result.final_loss[finite], linewidth=2)
    ax.axhline(result.least_squares_loss, color="grey", linestyle=":", label="least-squares loss")
    ax.axvline(result.stable_bound, color="red", linestyle="--", label=f"2/lambda_max = {result.stable_bound:.4g}")
    fastest = f"2/(lambda_min+lambda_max) = {result.fastest_lr:.4g}"
    ax.axvline(result.fastest_lr, color="green", linestyle="--", label=fastest)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"loss after {result.iterations} iterations")
    ax.set_title(title)
    ax.legend()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110), force=force)
    plt.close(fig)
