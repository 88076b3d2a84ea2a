"""scikit-learn estimators on the twins: GradientDescentRegressor and GradientDescentClassifier.

Each `fit` validates the input the way scikit-learn does, standardizes X (weighted mean and
spread, kept in `x_mean_` and `x_scale_`), runs gradtwin's one training loop with the chosen
engine, and maps the parameters back to X's units:

    x'_j = (x_j - mean_j) / scale_j,   z = x' . w' + b'   =>   coef_j = w'_j / scale_j,
                                                              intercept = b' - sum_j mean_j coef_j

On standardized X the loss's curvature is bounded by the data alone. With A = [X' 1] and
c_i = v_i / sum v (1/n unweighted), M = A.T diag(c) A, the Hessian is at most kappa * M with
kappa = 2 (squared error, where it is exactly 2 M), 1/4 (logistic: sigma (1 - sigma) <= 1/4)
or 1/2 (softmax: diag(p) - p p.T <= 1/2, Boehning 1992): the twins' `hessian` or `hessian_bound`,
read through `Model.curvature`. So L = kappa * lambda_max(M) bounds
it, every lr below 2/L is stable, and lr='auto' takes 1/L: a step that never overshoots.

Stopping: scikit-learn's SGD rule (gradtwin.training.loop.NoChange), on the full-batch loss,
with tol in units of loss_0, the loss at the start (the regressor's var(y), the loss of
predicting the mean, so tol reads on the 1 - R^2 scale; a classifier's ln k), so a fit does not
depend on y's units. Why the regressor's tol = 1e-9: with lr = 1/L the squared error's gap
L_t - L* shrinks, once its slowest direction dominates, by rho = (1 - lambda_min/lambda_max)^2
per step (lambda of M), so the first step that lowers the loss by less than tol * L_0 leaves

    L_t - L*  ~=  tol * L_0 * rho / (1 - rho)        (then n_iter_no_change - 1 more steps)

On diabetes (10 columns, raw y) lambda_max/lambda_min = 470, rho = 0.99575 (rho/(1-rho) = 234)
and L_0/L* = 5929.9/2859.7 = 2.07: the relative gap at the stop is about 486 * tol, under 1e-6
for tol <= 2e-9. tol = 1e-9 predicts 4.8e-7 and measures 4.77e-7 (2,279 iterations); max_iter
= 10,000 leaves room for a problem four times worse conditioned. n_iter_no_change = 5 as in
scikit-learn: full-batch descent lowers the loss monotonically, so it only adds 4 steps there,
and it absorbs the jitter of mini-batch epochs and of a float32 loss at its rounding floor.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from gradtwin import validate
from gradtwin.data import Dataset, as_real
from gradtwin.errors import DataError, DivergedError, UsageError
from gradtwin.manual import linear as manual_linear
from gradtwin.manual import logistic as manual_logistic
from gradtwin.manual import softmax as manual_softmax
from gradtwin.models import Model, get_model
from gradtwin.parity.rounding import gamma
from gradtwin.training import ENGINES, TrainResult, make_engine, train

Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class Problem:
    """What one fit trains: the model, standardized data (weights in data.weight where they differ), start and lr."""

    model: Model
    data: Dataset
    init: Params | None
    lr: float
    curvature: float  # L: the loss's Hessian is at most L * I
    start_loss: float  # L_0, the loss at the start: the unit of tol
    x_mean: np.ndarray  # (d,)
    x_scale: np.ndarray  # (d,)
    classes: np.ndarray | None = None  # the classifier's labels, sorted; the twins see their indices


class _GradientDescent(BaseEstimator):
    """What both estimators share: parameters, checks, standardization, the run and its mapping back."""

    def __init__(
        self,
        engine: str = "manual",
        lr: float | str = "auto",
        max_iter: int = 10_000,
        target_loss: float | None = None,
        batch_size: int | None = None,
        device: str = "cpu",
        dtype: str = "float64",
        random_state: int | np.random.RandomState | None = None,
        tol: float | None = 1e-9,
        n_iter_no_change: int = 5,
    ) -> None:
        self.engine = engine
        self.lr = lr
        self.max_iter = max_iter
        self.target_loss = target_loss
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "coef_")

    def _check_params(self) -> None:
        name = type(self).__name__
        if self.engine not in ENGINES:
            raise UsageError(f"{name}: engine must be one of {', '.join(ENGINES)}; got {self.engine!r}")
        lr_ok = isinstance(self.lr, str) and self.lr == "auto"
        lr_ok = lr_ok or (validate.is_real(self.lr) and math.isfinite(float(self.lr)) and float(self.lr) > 0)
        if not lr_ok:
            raise UsageError(f"{name}: lr must be 'auto' or a positive finite number; got {self.lr!r}")
        validate.whole(self.max_iter, "max_iter", owner=name)
        validate.finite_at_least(self.target_loss, "target_loss", allow_none=True, owner=name)
        validate.whole(self.batch_size, "batch_size", allow_none=True, owner=name)
        validate.finite_at_least(self.tol, "tol", allow_none=True, owner=name)
        validate.whole(self.n_iter_no_change, "n_iter_no_change", owner=name)

    def _validate(self, X: Any, y: Any, sample_weight: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """X (n, d) float64, y (n,) as given, and the weights: None where they are all equal.

        Forgets an earlier fit first, so that a fit that fails leaves no stale coefficients.
        """
        for fitted in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, fitted)
        self._check_params()
        X, y = validate_data(self, X, y, accept_sparse=False, dtype=np.float64, y_numeric=False, multi_output=False)
        if sample_weight is None:
            return X, y, None
        raw = np.asarray(sample_weight)
        if raw.ndim == 1 and raw.shape[0] == X.shape[0] and raw.dtype.kind in "biuf":
            negative = np.flatnonzero(raw < 0)
            if negative.size:
                row = int(negative[0])
                raise DataError(f"sample_weight must be >= 0; got {raw[row]:g} at row {row} (counting from 0)")
            if not np.any(raw != 0):
                raise DataError(f"sample_weight must not be all zero; got {raw.size} zeros, which leave nothing to fit")
        weight = _check_sample_weight(sample_weight, X, dtype=np.float64)  # shape, type, NaN: scikit-learn's words
        # equal weights cancel in sum_i v_i l_i / sum_i v_i: the unweighted twins give the same fit
        return X, y, None if np.all(weight == weight[0]) else weight

    def _problem(
        self, model: Model, X: np.ndarray, Y: np.ndarray, weight: np.ndarray | None, classes: np.ndarray | None = None
    ) -> Problem:
        """Standardize X, bound the curvature, choose lr and the start."""
        x_mean, x_scale, Xs = standardize(X, weight)
        curvature = model.curvature(Xs, weight)
        assert curvature is not None, f"{model.name} has a Hessian or a bound on it"
        lr = 1.0 / curvature if isinstance(self.lr, str) else float(self.lr)
        # the regressor starts at the optimal intercept: its gradient is 0 on centred X
        init = {"w": np.zeros(X.shape[1]), "b": np.asarray(np.average(Y, weights=weight))}
        data = Dataset(Xs, Y, name=type(self).__name__, weight=weight)
        start = init if model.task == "regression" else None
        at = init if start is not None else model.init_params(data)  # classifiers start from zeros
        first = float(model.manual.loss(at, Xs, Y, weight))  # var(y) for the regressor, ln k for a classifier
        return Problem(model, data, start, lr, curvature, first, x_mean, x_scale, classes)

    def _train(self, problem: Problem) -> TrainResult:
        """Run the chosen engine on the problem; a run that blew up, or whose loss grew, raises."""
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        engine = make_engine(self.engine, problem.model, self.dtype, self.device)
        result = train(
            engine,
            problem.data,
            problem.lr,
            self.max_iter,
            self.target_loss,
            problem.init,
            batch_size=self.batch_size,
            batch_seed=seed,
            tol=None if self.tol is None else self.tol * problem.start_loss,
            n_iter_no_change=self.n_iter_no_change,
        )
        # full-batch descent with a stable lr never raises the loss: a rise is a divergence under way
        grew = self.batch_size is None and result.loss > result.history.loss[0]
        if result.stop_reason == "diverged" or grew or not np.all(np.isfinite(result.history.loss)):
            raise DivergedError(self._divergence(result, problem))
        if self.tol is not None and result.stop_reason == "iterations":
            warnings.warn(self._unconverged(result, problem), ConvergenceWarning, stacklevel=3)
        return result

    def _unconverged(self, result: TrainResult, problem: Problem) -> str:
        """The warning of a fit that max_iter ended before the tol rule was met: how far, and what to do."""
        epochs = "iterations" if self.batch_size is None or self.batch_size >= problem.data.n else "epochs"
        return (
            f"{type(self).__name__}: max_iter={self.max_iter} ended the fit before it converged "
            f"(loss {result.loss:.6g} from {result.history.loss[0]:.6g}; the tol rule waits for "
            f"{self.n_iter_no_change} {epochs} in a row that each lower it by less than tol * loss_0 = "
            f"{self.tol:g} * {problem.start_loss:.6g}); raise max_iter, or raise tol to stop sooner "
            "(tol=None runs max_iter without this warning)"
        )

    def _divergence(self, result: TrainResult, problem: Problem) -> str:
        """The error of a run that blew up: where, with which lr, and which learning rates are stable."""
        first, L = float(result.history.loss[0]), problem.curvature
        if not math.isfinite(result.loss) or not all(np.all(np.isfinite(p)) for p in result.params.values()):
            cause = "a non-finite loss or parameter"
        else:
            cause = f"loss {result.loss:.6g} from {first:.6g}"
        stable = (
            f"the largest stable learning rate for this model and data is {2.0 / L:.6g}"
            if problem.model.task == "regression"  # squared error: the Hessian is exactly 2 M, so 2/L is the bound
            else f"learning rates below {2.0 / L:.6g} (2/L, L the loss's largest curvature) are stable"
        )
        return (
            f"{type(self).__name__}(engine={self.engine!r}): diverged at iteration {result.iterations} ({cause}) "
            f"with lr={result.lr:g}; {stable}; lr='auto' takes {1.0 / L:.6g}"
        )

    def _record(self, problem: Problem, result: TrainResult) -> None:
        self.x_mean_, self.x_scale_, self.lr_ = problem.x_mean, problem.x_scale, problem.lr
        self.n_iter_ = result.iterations
        self.loss_curve_ = result.history.loss.copy()
        self.loss_ = result.loss
        self.stop_reason_ = result.stop_reason


class GradientDescentRegressor(RegressorMixin, _GradientDescent):
    """Linear regression by gradient descent on gradtwin's `linear` twins: pred = X @ coef_ + intercept_.

    The loss is the (sample-weighted) mean squared error, in y's units squared; training starts
    from coef = 0 and the intercept at the weighted mean of y, where the intercept's gradient is
    already zero on centred X. Parameters:

    engine: 'manual' (hand-derived gradients), 'autograd' (PyTorch), 'tape' (gradtwin's own autodiff),
        or any name in gradtwin.training.ENGINES.
    lr: 'auto' (1/L, half the largest stable rate; see the module's docstring) or a number.
    max_iter: gradient steps (the iteration budget). target_loss: stop once the loss is at or below it.
    tol, n_iter_no_change: stop, converged, once n_iter_no_change epochs in a row each lower the
        best loss so far by less than tol * loss_0 (loss_0 = loss_curve_[0], here var(y)); an
        epoch is one full-batch step, or with batch_size one pass of mini-batches (its loss the
        mean of their losses). tol=None: always max_iter steps. Default 1e-9: the least-squares
        loss within 1e-6 relatively on diabetes (derivation in the module's docstring). When
        max_iter ends a fit before that, fit warns with sklearn.exceptions.ConvergenceWarning.
    batch_size: mini-batches of this many rows, drawn from a permutation per epoch (None: all rows).
    device, dtype: where and in which precision the engine runs ('cpu', 'cuda', ...; 'float64', 'float32').
    random_state: seeds the mini-batch order.

    Fitted: coef_ (d,), intercept_ (float), n_iter_, n_features_in_, loss_curve_ (the loss before
    each step and after the last: n_iter_ + 1 values), loss_, lr_, x_mean_, x_scale_, and
    stop_reason_: 'converged' (the tol rule), 'iterations' (max_iter), or 'target_loss'.
    A run that diverges raises gradtwin.DivergedError naming the iteration, lr and the stable bound.
    """

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> GradientDescentRegressor:
        problem = self._prepare(X, y, sample_weight)
        result = self._train(problem)
        coef, intercept = unstandardize(result.params["w"], result.params["b"], problem, type(self).__name__)
        self.coef_, self.intercept_ = coef, float(intercept)
        self._record(problem, result)
        return self

    def _prepare(self, X: Any, y: Any, sample_weight: Any) -> Problem:
        X, y, weight = self._validate(X, y, sample_weight)
        source = f"{type(self).__name__} (a regressor; for class labels use GradientDescentClassifier)"
        target = np.array(as_real(y, "y", source))  # a writable copy: torch refuses read-only memory
        return self._problem(get_model("linear"), X, target, weight)

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=False, dtype=np.float64, reset=False)
        return np.asarray(manual_linear.predict({"w": self.coef_, "b": np.asarray(self.intercept_)}, X))


class GradientDescentClassifier(ClassifierMixin, _GradientDescent):
    """Logistic regression by gradient descent: gradtwin's `logistic` twins for two classes, `softmax` for more.

    The loss is the (sample-weighted) mean cross-entropy; training starts from zeros. Labels may
    be any values scikit-learn accepts as classes (integers, strings...): `classes_` holds them
    sorted, and the twins see their indices. Parameters as GradientDescentRegressor's.

    tol defaults to 1e-4 here, not the regressor's 1e-9: without a penalty the cross-entropy has
    no minimum on separable classes (breast cancer is separable: the loss falls like 1/t and the
    weights grow for ever), so a tight tol would only run max_iter. With tol=1e-4 (in units of
    loss_0 = ln k, about scikit-learn's absolute 1e-4 in nats) the default fit on breast cancer
    stops, converged, at 191 iterations (190 on a stratified 75% split: 96.5% held-out accuracy).

    Fitted: classes_, coef_ (1, d) for two classes or (k, d), intercept_ (1,) or (k,), n_iter_,
    n_features_in_, loss_curve_, loss_, lr_, stop_reason_, x_mean_, x_scale_.
    """

    def __init__(
        self,
        engine: str = "manual",
        lr: float | str = "auto",
        max_iter: int = 10_000,
        target_loss: float | None = None,
        batch_size: int | None = None,
        device: str = "cpu",
        dtype: str = "float64",
        random_state: int | np.random.RandomState | None = None,
        tol: float | None = 1e-4,
        n_iter_no_change: int = 5,
    ) -> None:
        super().__init__(
            engine, lr, max_iter, target_loss, batch_size, device, dtype, random_state, tol, n_iter_no_change
        )

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> GradientDescentClassifier:
        problem = self._prepare(X, y, sample_weight)
        result = self._train(problem)
        name = type(self).__name__
        if problem.model.name == "logistic":
            coef, intercept = unstandardize(result.params["w"], result.params["b"], problem, name)
            self.coef_, self.intercept_ = coef[None, :], np.atleast_1d(intercept)  # (1, d), (1,)
        else:
            coef, intercept = unstandardize(result.params["W"], result.params["b"], problem, name)
            self.coef_, self.intercept_ = np.ascontiguousarray(coef.T), intercept  # (k, d), (k,)
        assert problem.classes is not None
        self.classes_: np.ndarray = problem.classes
        self._record(problem, result)
        return self

    def _prepare(self, X: Any, y: Any, sample_weight: Any) -> Problem:
        X, y, weight = self._validate(X, y, sample_weight)
        check_classification_targets(y)
        classes, labels = np.unique(y, return_inverse=True)
        labels = labels.astype(np.int64)  # (n,) 0..k-1
        present = np.bincount(labels, weights=weight, minlength=classes.size) > 0  # (k,)
        if np.count_nonzero(present) < 2:
            weighted_note = " with a positive sample_weight" if weight is not None else ""
            raise DataError(
                f"{type(self).__name__} needs samples of at least 2 classes{weighted_note}; got 1 class "
                f"({classes[present].tolist()[0]!r})"
            )
        model = get_model("logistic" if classes.size == 2 else "softmax")
        return self._problem(model, X, labels, weight, classes)

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits: (n,) for two classes (positive favours classes_[1]), else (n, k)."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=False, dtype=np.float64, reset=False)
        if self.classes_.size == 2:
            return np.asarray(manual_logistic.logits({"w": self.coef_[0], "b": self.intercept_[0]}, X))
        return np.asarray(manual_softmax.logits({"W": self.coef_.T, "b": self.intercept_}, X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n, k): [sigma(-z), sigma(z)] for two classes, softmax(Z) for more."""
        z = self.decision_function(X)
        if self.classes_.size == 2:
            return np.column_stack([manual_logistic.sigmoid(-z), manual_logistic.sigmoid(z)])
        return np.asarray(manual_softmax.softmax(z))

    def predict(self, X: Any) -> np.ndarray:
        z = self.decision_function(X)
        index = (z > 0).astype(np.int64) if self.classes_.size == 2 else np.argmax(z, axis=1)
        return self.classes_[index]


def standardize(X: np.ndarray, weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (d,), scale (d,), X' = (X - mean) / scale), weighted; a constant column gets scale 1.

    The mean of n terms carries up to gamma(n) * |mean| of rounding, so a spread below that
    is a constant column seen through rounding: it is centred to exact zeros at scale 1.
    """
    mean = np.average(X, axis=0, weights=weight)  # (d,)
    centred = X - mean  # (n, d)
    scale = np.sqrt(np.average(centred * centred, axis=0, weights=weight))  # (d,)
    constant = scale <= gamma(X.shape[0], np.float64) * np.abs(mean)  # (d,)
    centred[:, constant] = 0.0
    scale[constant | (scale == 0)] = 1.0
    return mean, scale, centred / scale


def unstandardize(w: np.ndarray, b: np.ndarray, problem: Problem, name: str) -> tuple[np.ndarray, np.ndarray]:
    """coef = w' / scale, intercept = b' - mean @ coef, for w' (d,) or (d, k); refuses what overflows."""
    scale = problem.x_scale if w.ndim == 1 else problem.x_scale[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        coef = w / scale  # (d,) or (d, k)
        intercept = b - problem.x_mean @ coef  # () or (k,)
    if not (np.all(np.isfinite(coef)) and np.all(np.isfinite(intercept))):
        j = int(np.argmin(problem.x_scale))
        raise DataError(
            f"{name}: the coefficients in X's units overflow float64 (column {j} spreads over only "
            f"{problem.x_scale[j]:.3g} around {problem.x_mean[j]:.3g}); rescale X"
        )
    return coef, intercept
