"""Pictures of a comparison and of a learning-rate sweep: each built as a Figure, then written whole."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from gradtwin.cli.files import atomic_write
from gradtwin.training.loop import TrainResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from gradtwin.steps.explain import Explanation
    from gradtwin.training.exact import Sweep

DIVERGED = "diverged (loss beyond the axis)"


def write_figure(fig: Figure, path: str | os.PathLike[str], force: bool = False) -> None:
    """`fig` as a PNG at `path`, written whole or not at all (`atomic_write`)."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110), force=force)


def ulp(values: np.ndarray, dtype: str) -> np.ndarray:
    """1 ulp of `dtype` at each |value|: eps * 2**floor(log2 |value|); NaN where a value is 0 or not finite.

    The smallest difference two losses of that size can have in `dtype` (np.spacing, for normal numbers).
    """
    eps = 2.0**-7 if dtype == "bfloat16" else float(np.finfo(np.dtype(dtype)).eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.floor(np.log2(np.abs(np.asarray(values, dtype=np.float64))))
    return np.where(np.isfinite(exponent), eps * 2.0**exponent, np.nan)


def compare_figure(manual: TrainResult, autograd: TrainResult, loss_name: str = "loss") -> Figure:
    """Two panels: each twin's loss per iteration (log scale); |manual - autograd| against 1 ulp of the loss."""
    from matplotlib.figure import Figure

    hm, ha = manual.history, autograd.history
    common, im, ia = np.intersect1d(hm.iteration, ha.iteration, return_indices=True)
    diff = np.abs(hm.loss[im] - ha.loss[ia])  # (m,) at the iterations both recorded
    fig = Figure(figsize=(7, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(hm.iteration, hm.loss, label="manual (NumPy)", linewidth=2.5, alpha=0.6)
    top.plot(ha.iteration, ha.loss, label="autograd (PyTorch)", linestyle="--")
    top.set_yscale("log")
    top.set_ylabel(f"loss ({loss_name})")
    top.set_title(f"{manual.model}: both twins, {manual.dtype}, lr={manual.lr:g}")
    top.legend()
    shown = np.where(diff > 0, diff, np.nan)  # exact agreement has no place on a log axis
    bottom.plot(common, shown, ".", markersize=3, zorder=3, label="|difference|")
    scale = ulp(np.maximum(np.abs(hm.loss[im]), np.abs(ha.loss[ia])), manual.dtype)  # (m,)
    ulp_label = f"1 ulp of the loss in {manual.dtype}"
    bottom.plot(common, scale, color="grey", linestyle="--", drawstyle="steps-post", zorder=2, label=ulp_label)
    bottom.set_yscale("log")
    bottom.set_xlabel("iteration")
    bottom.set_ylabel("|loss manual - loss autograd|")
    exact = int(np.sum(diff == 0))
    bottom.set_title(f"difference per iteration ({exact} of {common.size} iterations identical, not drawn)")
    bottom.legend()
    return fig


def plot_compare(
    manual: TrainResult,
    autograd: TrainResult,
    path: str | os.PathLike[str],
    force: bool = False,
    loss_name: str = "loss",
) -> None:
    """`compare_figure` written to `path` as a PNG."""
    write_figure(compare_figure(manual, autograd, loss_name), path, force)


def _distinct(a: float, b: float) -> tuple[str, str]:
    """`a` and `b` with the fewest significant digits (at least 4, trailing zeros kept) that tell them apart."""
    for digits in range(4, 18):
        sa, sb = f"{a:#.{digits}g}", f"{b:#.{digits}g}"
        if sa != sb:
            break
    return sa, sb


def sweep_limits(result: Sweep) -> tuple[float, float]:
    """The loss axis: the range of the stable rates' finite losses and the least-squares loss, padded.

    Without a stable finite loss, that of every finite positive loss; a diverged rate (8.7e90)
    does not stretch the axis, it is marked at the top edge instead.
    """
    loss = result.final_loss
    usable = np.isfinite(loss) & (loss > 0)
    reference = loss[usable & result.stable] if np.any(usable & result.stable) else loss[usable]
    if result.least_squares_loss > 0 and np.isfinite(result.least_squares_loss):
        reference = np.append(reference, result.least_squares_loss)
    if reference.size == 0:
        return 0.1, 10.0
    lo, hi = np.log10(reference.min()), np.log10(reference.max())
    pad = 0.08 * (hi - lo) if hi > lo else 0.1
    return float(10.0 ** (lo - pad)), float(10.0 ** (hi + pad))


def sweep_figure(result: Sweep, title: str) -> Figure:
    """Final loss against learning rate (log-log); rates whose loss is beyond the axis marked at its top edge.

    2/lambda_max (red, dashed) and 2/(lambda_min+lambda_max) (green, dotted) are drawn in different
    styles, each labelled at its top with enough digits to tell them apart: they can be 0.2485 and 0.2480.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    low, high = sweep_limits(result)
    loss = result.final_loss
    inside = np.isfinite(loss) & (loss <= high)
    ax.plot(result.lrs, np.where(inside, loss, np.nan), linewidth=2, label="final loss")
    beyond = ~inside
    if np.any(beyond):
        ax.plot(
            result.lrs[beyond],
            np.ones(int(beyond.sum())),
            linestyle="none",
            marker="^",
            color="black",
            markersize=7,
            clip_on=False,
            transform=ax.get_xaxis_transform(),  # x in data, y in axes: 1 is the top edge
            label=DIVERGED,
        )
    ax.axhline(result.least_squares_loss, color="grey", linestyle=":", label="least-squares loss")
    stable, fastest = _distinct(result.stable_bound, result.fastest_lr)
    top = ax.get_xaxis_transform()
    ax.axvline(result.stable_bound, color="tab:red", linestyle="--", linewidth=1.5, label=f"2/lambda_max = {stable}")
    ax.text(result.stable_bound, 0.98, f" {stable}", transform=top, color="tab:red", ha="left", va="top", rotation=90)
    label = f"2/(lambda_min+lambda_max) = {fastest}"
    ax.axvline(result.fastest_lr, color="tab:green", linestyle=":", linewidth=2.5, label=label)
    ax.text(result.fastest_lr, 0.98, f"{fastest} ", transform=top, color="tab:green", ha="right", va="top", rotation=90)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"loss after {result.iterations} iterations")
    ax.set_title(title)
    ax.legend(loc="best", fontsize="small")
    return fig


def plot_sweep(result: Sweep, title: str, path: str | os.PathLike[str], force: bool = False) -> None:
    """`sweep_figure` written to `path` as a PNG."""
    write_figure(sweep_figure(result, title), path, force)


Colour = str | tuple[float, float, float]
OK_COLOURS = ("#1a9850", "#d9ef8b")  # error 0 .. at its tolerance: deep to pale green
WRONG_COLOURS = ("#fc8d59", "#a50026")  # just beyond its tolerance .. 1000 times beyond: orange to deep red


def step_colour(ratio: float, ok: bool) -> tuple[float, float, float]:
    """A step's colour by error / tolerance: green shades where it agrees, red ones where it does not."""
    from matplotlib.colors import to_rgb

    if ok:
        low, high, t = *OK_COLOURS, min(max(ratio, 0.0), 1.0)
    else:
        low, high = WRONG_COLOURS
        t = min(max(np.log10(ratio) / 3.0, 0.0), 1.0) if np.isfinite(ratio) and ratio > 0 else 1.0
    a, b = np.array(to_rgb(low)), np.array(to_rgb(high))
    r, g, bl = (1 - t) * a + t * b
    return float(r), float(g), float(bl)


def explain_figure(explanation: Explanation) -> Figure:
    """The backward pass as a chain: the loss, then each intermediate to the right, each parameter below the
    step it comes from; each box coloured by error / tolerance (`step_colour`), the first wrong one outlined.

    Boxes are FancyBboxPatch with gid 'loss' and 'step:<name>'.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    steps = explanation.steps
    parents = explanation.parents
    params = set(explanation.report.after)  # the parameters' names; every other step is an intermediate
    children: dict[str | None, list[str]] = {}
    for s in steps:
        if s.name in params:
            children.setdefault(parents.get(s.name), []).append(s.name)
    w, h, gap = 1.2, 0.9, 0.25
    spacing = max([1.6, *((w + gap) * len(c) for c in children.values())])
    place: dict[str | None, tuple[float, float]] = {None: (0.0, 0.0)}
    for s in steps:
        if s.name not in params:
            place[s.name] = (spacing * len(place), 0.0)
    for parent, names in children.items():
        x = place.get(parent, (0.0, 0.0))[0]
        for j, name in enumerate(names):
            place[name] = (x + (j - (len(names) - 1) / 2) * (w + gap), -1.5)
    columns = 1 + sum(s.name not in params for s in steps)  # the loss and each intermediate
    fig = Figure(figsize=(max(6.0, 0.9 * spacing * columns + 1.0), 4.2 if children else 2.6), layout="constrained")
    ax = fig.subplots()
    first = next((s.name for s in steps if not s.ok), None)

    def box(xy: tuple[float, float], text: str, colour: Colour, gid: str, edge: float) -> None:
        patch = FancyBboxPatch(
            (xy[0] - w / 2, xy[1] - h / 2), w, h, boxstyle="round,pad=0.05", facecolor=colour,
            edgecolor="black", linewidth=edge,
        )  # fmt: skip
        patch.set_gid(gid)
        ax.add_patch(patch)
        ax.text(xy[0], xy[1], text, ha="center", va="center", fontsize=8)

    box(place[None], "L\n(loss)", "#dddddd", "loss", 1.0)
    for s in steps:
        ratio = s.abs_err / s.tol if s.tol > 0 else (0.0 if s.abs_err == 0 else np.inf)
        label = f"dL/d{s.name}\n{tuple(s.shape)}\nerr/tol {ratio:.2g}"
        box(place[s.name], label, step_colour(ratio, s.ok), f"step:{s.name}", 3.0 if s.name == first else 1.0)
        start, end = np.array(place.get(parents.get(s.name), (0.0, 0.0))), np.array(place[s.name])
        along = end - start
        with np.errstate(divide="ignore"):  # from box edge to box edge: the part of the line outside both boxes
            t = float(np.min(np.array([w / 2 + 0.08, h / 2 + 0.08]) / np.abs(along)))
        ax.annotate("", xy=tuple(end - t * along), xytext=tuple(start + t * along),
                    arrowprops={"arrowstyle": "->", "color": "black"})  # fmt: skip
    xs = [p[0] for p in place.values()]
    ys = [p[1] for p in place.values()]
    ax.set_xlim(min(xs) - w, max(xs) + w)
    ax.set_ylim(min(ys) - h, max(ys) + h)
    ax.set_aspect("equal")
    ax.axis("off")
    verdict = "every step agrees" if explanation.ok else f"first wrong step: dL/d{first} (thick outline)"
    ax.set_title(
        f"{explanation.model}, {explanation.dtype}: the backward pass from the loss back; {verdict}\n"
        "green: error within its tolerance (paler: nearer it); red: beyond it (darker: further)",
        fontsize=9,
    )
    return fig


def plot_explain(explanation: Explanation, path: str | os.PathLike[str], force: bool = False) -> None:
    """`explain_figure` written to `path`: SVG for a name ending in .svg, else PNG."""
    fig = explain_figure(explanation)
    kind = "svg" if os.fspath(path).lower().endswith(".svg") else "png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=kind, dpi=110), force=force)
