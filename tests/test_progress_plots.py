"""Progress by time (the bar, the loop's reports, check's points) and plots that tell the truth."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import tqdm.std
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from gradtwin.cli import commands, main, plots
from gradtwin.cli.progress import DELAY, MININTERVAL, progress_bar
from gradtwin.models import MODELS
from gradtwin.parity.model_check import check_model
from gradtwin.training import ExactEngine, make_engine, train
from gradtwin.training.exact import Sweep, sweep


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """Stands in for the bar: remembers its total, label and every update."""

    made: ClassVar[list[Recorder]] = []

    def __init__(self, total: int | None, label: str, unit: str = "it") -> None:
        self.total, self.label, self.updates = total, label, []
        Recorder.made.append(self)

    def update(self, k: int) -> None:
        self.updates.append(k)

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.label = desc

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[Recorder]:
    Recorder.made = []
    monkeypatch.setattr(commands, "progress_bar", Recorder)
    return Recorder


# ---- the bar ----------------------------------------------------------------------------------


def test_the_bar_on_a_terminal_is_configured_by_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = progress_bar(2000, "manual")
    assert not bar.disable
    assert bar.mininterval == MININTERVAL >= 0.1
    assert bar.delay == DELAY > 0
    assert bar.miniters == 1 and not bar.dynamic_miniters  # every update reads the clock
    bar.close()


def test_the_bar_redraws_by_time_not_by_count(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(tqdm.std, "time", clock)
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    bar = progress_bar(10_000, "manual")

    def drawn_after(seconds: float, k: int) -> bool:
        clock.now += seconds
        before = len(err.getvalue())
        bar.update(k)
        return len(err.getvalue()) > before

    assert not drawn_after(DELAY / 2, 64)  # short work shows no bar
    assert drawn_after(DELAY, 64)  # past the delay: drawn
    assert not drawn_after(MININTERVAL / 10, 5000)  # however many iterations, not again so soon
    assert drawn_after(MININTERVAL, 1)  # one iteration later, once enough time has passed
    bar.close()


def test_the_bar_is_off_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    bar = progress_bar(10, "manual")
    assert bar.disable
    bar.update(10)
    bar.close()
    assert err.getvalue() == ""


# ---- the loop and the commands report often ------------------------------------------------------


@pytest.mark.parametrize(("check_every", "most"), [(64, 64), (1, 1), (7, 7)])
def test_the_loop_reports_every_chunk_and_the_counts_sum_to_the_iterations(check_every: int, most: int) -> None:
    model = MODELS["linear1d"]
    calls: list[int] = []
    engine = make_engine("manual", model)
    result = train(engine, model.default_data(), 0.1, 2000, check_every=check_every, progress=calls.append)
    assert sum(calls) == result.iterations == 2000
    assert max(calls) <= most  # not 1,000 iterations in the dark
    assert len(calls) >= 2000 // most


def test_a_short_mlp_run_reports_before_its_end() -> None:
    model = MODELS["mlp"]
    data = model.default_data()
    calls: list[int] = []
    result = train(make_engine("manual", model), data, 1.0, 200, init=model.init_params(data, 0), progress=calls.append)
    assert sum(calls) == result.iterations == 200 and len(calls) >= 200 // 64


def test_a_stopped_run_reports_exactly_the_iterations_done() -> None:
    model = MODELS["linear1d"]
    data = model.default_data()
    calls: list[int] = []
    result = train(make_engine("autograd", model), data, 0.1, 5000, target_loss=4000.0, progress=calls.append)
    assert result.stop_reason == "target_loss" and 0 < result.iterations < 5000
    assert sum(calls) == result.iterations


def test_the_exact_engine_reports_its_iterations() -> None:
    model = MODELS["linear"]
    calls: list[int] = []
    result = train(ExactEngine(model), model.default_data(), 0.1, 300, progress=calls.append)
    assert sum(calls) == result.iterations == 300


def test_check_model_reports_each_point() -> None:
    calls: list[int] = []
    check_model(MODELS["linear1d"], points=3, progress=calls.append)
    assert calls == [1, 1, 1]


def test_check_command_moves_its_bar_per_point(recorder: type[Recorder], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--model", "linear1d", "--points", "3"]) == 0
    (bar,) = recorder.made
    assert bar.total == 3 and bar.updates == [1, 1, 1] and "linear1d" in bar.label


def test_train_and_compare_move_their_bars(recorder: type[Recorder], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--iterations", "300"]) == 0
    assert main(["compare", "--iterations", "300"]) == 0
    assert [b.label for b in recorder.made] == ["manual", "manual", "tape", "autograd"]
    for bar in recorder.made:
        assert bar.total == 300 and sum(bar.updates) == 300 and len(bar.updates) >= 300 // 64


# ---- plots ----------------------------------------------------------------------------------------


def _twins(name: str, dtype: str = "float64", iterations: int = 30) -> tuple[Any, Any]:
    model = MODELS[name]
    data = model.default_data()
    init = model.init_params(data, 0)
    runs = [
        train(make_engine(e, model, dtype), data, model.default_lr, iterations, init=init)
        for e in ("manual", "autograd")
    ]
    return runs[0], runs[1]


LOSSES = [("linear1d", "mean squared error"), ("linear", "mean squared error"), ("logistic", "mean cross-entropy"),
          ("softmax", "mean cross-entropy"), ("mlp", "mean cross-entropy")]  # fmt: skip


@pytest.mark.parametrize(("name", "loss"), LOSSES)
def test_the_loss_axis_names_the_models_loss(name: str, loss: str) -> None:
    assert MODELS[name].loss_name == loss
    manual, autograd = _twins(name, iterations=10)
    top = plots.compare_figure(manual, autograd, MODELS[name].loss_name).axes[0]
    assert top.get_ylabel() == f"loss ({loss})"


def test_compare_plots_a_classifier_with_its_own_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    figures: list[Figure] = []
    write = plots.write_figure
    monkeypatch.setattr(
        plots, "write_figure", lambda fig, path, force=False: (figures.append(fig), write(fig, path, force))
    )
    path = tmp_path / "c.png"
    assert main(["compare", "--model", "logistic", "--iterations", "20", "--plot", str(path)]) == 0
    assert figures[0].axes[0].get_ylabel() == "loss (mean cross-entropy)"
    assert "MSE" not in figures[0].axes[0].get_ylabel()
    assert path.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ulp_is_numpys_spacing(dtype: str) -> None:
    values = np.abs(np.random.default_rng(0).standard_normal(1000)) * 10.0 ** np.linspace(-30, 30, 1000)
    values = values.astype(dtype)
    np.testing.assert_array_equal(plots.ulp(values, dtype), np.spacing(values).astype(np.float64))
    assert np.isnan(plots.ulp(np.array([0.0, np.inf, np.nan]), dtype)).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_difference_panel_shows_one_ulp_of_the_loss(dtype: str) -> None:
    manual, autograd = _twins("linear1d", dtype)
    bottom = plots.compare_figure(manual, autograd, "mean squared error").axes[1]
    (reference,) = [line for line in bottom.get_lines() if line.get_label() == f"1 ulp of the loss in {dtype}"]
    loss = manual.history.loss.astype(dtype)  # the recorded losses, as the run held them
    np.testing.assert_array_equal(
        reference.get_ydata(), np.spacing(np.maximum(loss, autograd.history.loss.astype(dtype)))
    )
    legend = bottom.get_legend()
    assert legend is not None and f"1 ulp of the loss in {dtype}" in [t.get_text() for t in legend.get_texts()]


def _default_sweep() -> Sweep:
    model = MODELS["linear"]
    data = model.default_data()
    traj = ExactEngine(model).trajectory(data, model.init_params(data), 1.0)
    return sweep(traj, np.geomspace(0.01 * traj.stable_bound, 1.2 * traj.stable_bound, 40), 300)


def _lines(fig: Figure) -> dict[str, Line2D]:
    return {str(line.get_label()): line for line in fig.axes[0].get_lines()}


def test_a_diverged_rate_does_not_flatten_the_sweep() -> None:
    result = _default_sweep()
    assert result.final_loss.max() > 1e80  # the largest rate diverges (8.7e90 at 1.2 * 2/lambda_max)
    fig = plots.sweep_figure(result, "linear on diabetes")
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    stable = result.final_loss[result.stable]
    assert low <= min(stable.min(), result.least_squares_loss) and high >= stable.max()
    assert high < 10 * stable.max()  # the useful range fills the axis
    beyond = result.final_loss > high
    assert beyond.any()
    marks = _lines(fig)[plots.DIVERGED]
    np.testing.assert_array_equal(marks.get_xdata(), result.lrs[beyond])
    np.testing.assert_array_equal(marks.get_ydata(), 1.0)  # the top edge, in axes units
    assert marks.get_transform() == ax.get_xaxis_transform() and marks.get_marker() == "^"
    assert plots.DIVERGED in [t.get_text() for t in ax.get_legend().get_texts()]
    curve = _lines(fig)["final loss"].get_ydata()
    assert np.all(np.isnan(curve[beyond])) and np.all(np.isfinite(curve[~beyond]))


def test_non_finite_and_huge_losses_are_marked_at_the_top() -> None:
    lrs = np.geomspace(0.01, 0.3, 6)
    loss = np.array([10.0, 5.0, 3.0, 2.5, 8.7e90, np.inf])
    stable = np.array([True, True, True, True, False, False])
    result = Sweep(lrs, 100, loss, stable, np.abs(1 - lrs * 8.0), 2.0, 0.05, 8.0)
    fig = plots.sweep_figure(result, "made up")
    low, high = fig.axes[0].get_ylim()
    assert low < 2.0 and 10.0 < high < 20.0
    np.testing.assert_array_equal(_lines(fig)[plots.DIVERGED].get_xdata(), lrs[4:])


def test_the_two_rate_markers_are_told_apart() -> None:
    result = _default_sweep()
    assert abs(result.stable_bound - result.fastest_lr) < 0.01 * result.stable_bound  # 0.2485 and 0.2480
    fig = plots.sweep_figure(result, "linear on diabetes")
    lines = _lines(fig)
    (stable,) = [v for k, v in lines.items() if k.startswith("2/lambda_max = ")]
    (fastest,) = [v for k, v in lines.items() if k.startswith("2/(lambda_min+lambda_max) = ")]
    assert stable.get_linestyle() != fastest.get_linestyle()
    assert stable.get_color() != fastest.get_color()
    assert stable.get_linewidth() != fastest.get_linewidth()
    a, b = (str(x.get_label()).split(" = ")[1] for x in (stable, fastest))
    assert a != b and float(a) == pytest.approx(result.stable_bound, rel=1e-3)
    assert float(b) == pytest.approx(result.fastest_lr, rel=1e-3)
    texts = [t.get_text().strip() for t in fig.axes[0].texts]
    assert a in texts and b in texts  # each written at the top of its line


# ---- every written file is named on stderr -------------------------------------------------------


def test_each_written_file_is_named_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--iterations", "5", "--history", "h.csv"]) == 0
    assert capsys.readouterr().err == "gradtwin: wrote history to 'h.csv'\n"
    assert main(["compare", "--iterations", "5", "--plot", "c.png"]) == 0
    assert capsys.readouterr().err == "gradtwin: wrote plot to 'c.png'\n"
    assert main(["sweep", "--lrs", "5", "--iterations", "5", "--plot", "s.png"]) == 0
    assert capsys.readouterr().err == "gradtwin: wrote plot to 's.png'\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "h.csv", "s.png"]
    assert main(["train", "--iterations", "5", "--json"]) == 0
    assert capsys.readouterr().err == ""  # nothing written, nothing said


def test_a_diverged_run_names_its_files_in_its_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--lr", "5", "--iterations", "50", "--history", "h.csv"]) == 3
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("gradtwin: manual: diverged at iteration") and line.endswith("; wrote history to 'h.csv'")
    assert main(["compare", "--lr", "5", "--iterations", "50", "--plot", "c.png"]) == 3
    (line,) = capsys.readouterr().err.splitlines()
    assert "diverged" in line and line.endswith("; wrote plot to 'c.png'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "h.csv"]
