"""The manual twins' one source on NumPy and on torch tensors (cpu, meta, cuda), against autograd.

Every tabular model (the layered ones: tests/test_model_<name>.py), parametrized over dtype and device;
cuda skips cleanly without a GPU. On a
device the twins pass the parity check (`conftest.assert_parity`), and the manual twin on
torch tensors (no autograd) is compared with the manual twin on NumPy, with autograd and
with the manual twin in float64 NumPy on the CPU. The tolerance is
gamma(K + ops) * sum|terms| per twin (`parity.tolerance`), which holds for any order of
summation: a GPU's reduction tree, NumPy's pairwise sum and torch's vectorized CPU sum
alike. TF32 is off and deterministic algorithms are on while they run (`strict_numerics`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DEVICES, DTYPES, TABULAR, assert_parity, plant
from gradtwin.models import MODELS, Model
from gradtwin.parity.compare import ParamCheck, compare
from gradtwin.parity.drift import drift_tolerance, gradient_tolerance
from gradtwin.parity.model_check import random_problem
from gradtwin.parity.numerics import nondeterminism, strict_numerics
from gradtwin.parity.rounding import tolerance
from gradtwin.parity.scales import gradient_scale, loss_scale, rounding_terms
from gradtwin.training import AutogradEngine, ManualEngine, train


def _on(values: Any, dtype: str, device: str) -> Any:
    """`values` as a tensor of `dtype` on `device`; integer class labels stay int64, as engines keep them."""
    values = np.asarray(values)
    kind = torch.int64 if np.issubdtype(values.dtype, np.integer) else getattr(torch, dtype)
    return torch.as_tensor(values, dtype=kind, device=device)


@pytest.mark.parametrize("device", [*DEVICES, "meta"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", TABULAR)
def test_manual_twin_stays_in_its_namespace_dtype_and_device(name: str, dtype: str, device: str) -> None:
    """Every output of the manual twin on torch tensors is a tensor of X's dtype on X's device.

    Except a classifier's predictions, which are int64 class labels (on X's device), as its
    labels Y are. The 'meta' device has no data, so on the CPU it catches a constant built without
    `device=` (the error a GPU would raise) and any call that needs NumPy.
    """
    model = MODELS[name]
    params, data = random_problem(model, np.random.default_rng(0))
    X, Y = _on(data.X, dtype, device), _on(data.Y, dtype, device)
    p = {k: _on(v, dtype, device) for k, v in params.items()}
    outputs = {
        "predict": model.manual.predict(p, X),
        "loss": model.manual.loss(p, X, Y),
        **{f"gradients[{k}]": v for k, v in model.manual.gradients(p, X, Y).items()},
        **{f"gradient_scale[{k}]": v for k, v in gradient_scale(model, p, X, Y).items()},
        "loss_scale": loss_scale(model, p, X, Y),
    }
    if hasattr(model.manual, "hessian"):
        outputs["hessian"] = model.manual.hessian(X)
    labels = model.task == "classification"
    assert Y.dtype == (torch.int64 if labels else X.dtype)
    for label, out in outputs.items():
        assert isinstance(out, torch.Tensor), f"{label} is a {type(out).__name__}, not a torch tensor"
        want = torch.int64 if labels and label == "predict" else X.dtype
        assert out.dtype == want and out.device == X.device, f"{label}: {out.dtype} on {out.device}, not {want}"
    assert tuple(outputs["predict"].shape) == (data.n,)
    for k in params:
        assert tuple(outputs[f"gradients[{k}]"].shape) == np.shape(params[k]), k
    assert outputs["loss"].shape == ()


def _manual_torch_checks(
    model: Model, params: dict[str, np.ndarray], data: Any, dtype: str, device: str
) -> list[ParamCheck]:
    """What the parity check does not compare: the manual twin on torch tensors (on `device`, the CPU
    included) against the manual twin on NumPy, against autograd, and against the cpu float64 reference.

    Forward value first, then each gradient.
    """
    K = rounding_terms(model, data.X, params)
    loss_tol_scale = loss_scale(model, params, data.X, data.Y)
    grad_scale = gradient_scale(model, params, data.X, data.Y)
    ref = {"loss": model.manual.loss(params, data.X, data.Y), **model.manual.gradients(params, data.X, data.Y)}
    engines = {
        "manual torch": ManualEngine(model, dtype, device, array="torch"),
        "manual numpy": ManualEngine(model, dtype, "cpu", array="numpy"),
        "autograd": AutogradEngine(model, dtype, device),
    }
    got = {}
    for label, eng in engines.items():
        loss, grads = eng.loss_and_gradients(eng.params(params), eng.asarray(data.X), eng.asarray(data.Y))
        got[label] = {"loss": eng.to_numpy(loss), **{k: eng.to_numpy(g) for k, g in grads.items()}}
    torch_twin, checks = got["manual torch"], []
    for key in ["loss", *params]:
        scale = loss_tol_scale if key == "loss" else grad_scale[key]
        pair = 2 * tolerance(dtype, K, scale)  # two twins in `dtype`, each within the bound
        ref_tol = tolerance(dtype, K, scale) + tolerance(np.float64, K, scale)
        checks.append(compare("manual torch vs manual numpy", key, torch_twin[key], got["manual numpy"][key], pair))
        checks.append(compare("manual torch vs autograd", key, torch_twin[key], got["autograd"][key], pair))
        checks.append(compare(f"manual torch {dtype} {device} vs cpu float64", key, torch_twin[key], ref[key], ref_tol))
    return checks


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", TABULAR)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_twins_on_device_agree_with_each_other_and_cpu_float64(name: str, dtype: str, device: str, seed: int) -> None:
    """The parity check on the device (the twins, float64, finite differences), then the manual twin on torch."""
    model = MODELS[name]
    params, data = random_problem(model, np.random.default_rng(seed))
    with strict_numerics():
        assert_parity(model, params, data, dtype, device)
        for c in _manual_torch_checks(model, params, data, dtype, device):
            assert c.ok, c.message()


def test_planted_bug_in_manual_torch_is_caught() -> None:
    """A lost factor of 2 in the manual twin, on torch tensors only, fails the device comparison."""
    model = MODELS["linear1d"]
    honest = model.manual.gradients

    def halved(params: Any, X: Any, Y: Any) -> Any:
        grads = honest(params, X, Y)
        return {k: g / 2 if isinstance(g, torch.Tensor) else g for k, g in grads.items()}

    params, data = random_problem(model, np.random.default_rng(1))
    assert all(c.ok for c in _manual_torch_checks(model, params, data, "float64", "cpu"))  # the real twin passes
    planted = replace(model, manual=plant(model, gradients=halved))
    failed = [c for c in _manual_torch_checks(planted, params, data, "float64", "cpu") if not c.ok]
    assert {c.comparison for c in failed} >= {"manual torch vs manual numpy", "manual torch vs autograd"}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", TABULAR)
def test_whole_histories_on_device_match_numpy(name: str, dtype: str, device: str) -> None:
    """Manual on torch (device), manual on NumPy and autograd (device) train alike, step by step.

    Models with a constant Hessian: free runs within the derived drift bound. Others: at
    every step of the NumPy run, the device twins' gradients within the gradient bound.
    """
    model = MODELS[name]
    data = model.default_data()
    stable = model.stable_lr(data.X)
    lr = 0.5 * stable if stable is not None and np.isfinite(stable) else 0.1
    init = model.init_params(data, seed=2)
    engines = {
        "manual numpy": ManualEngine(model, dtype, "cpu", array="numpy"),
        "manual torch": ManualEngine(model, dtype, device, array="torch"),
        "autograd": AutogradEngine(model, dtype, device),
    }
    with strict_numerics():
        runs = {label: train(eng, data, lr, 15, init=init) for label, eng in engines.items()}
        reference = runs["manual numpy"].history.params
        for label in ("manual torch", "autograd"):
            assert runs[label].iterations == runs["manual numpy"].iterations
            if hasattr(model.manual, "hessian"):
                bound = drift_tolerance(model, reference, data.X, data.Y, dtype, lr, [None] * 15)
                for k, values in reference.items():
                    diff = np.abs(runs[label].history.params[k] - values).reshape(len(bound), -1).max(axis=1)
                    assert np.all(diff <= bound), f"{label} {k}: max diff {diff.max():.3g}, bound {bound.max():.3g}"
                continue
            eng, ref_eng = engines[label], engines["manual numpy"]
            X, Y = eng.asarray(data.X), eng.asarray(data.Y)
            X_ref, Y_ref = ref_eng.asarray(data.X), ref_eng.asarray(data.Y)  # labels stay int64
            for t in range(15):
                p_t = {k: v[t] for k, v in reference.items()}
                _, grads = eng.loss_and_gradients(eng.params(p_t), X, Y)
                _, ref_grads = ref_eng.loss_and_gradients(ref_eng.params(p_t), X_ref, Y_ref)
                _, tol = gradient_tolerance(model, p_t, data.X, data.Y, dtype)
                for k in p_t:
                    c = compare(f"{label} vs manual numpy", k, eng.to_numpy(grads[k]), ref_grads[k], tol[k], t)
                    assert c.ok, c.message()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", TABULAR)
def test_nondeterministic_remainder_is_measured_and_bounded(name: str, device: str) -> None:
    """Each twin run twice on the device: bit-for-bit equal, or within the two-order bound."""
    model = MODELS[name]
    params, data = random_problem(model, np.random.default_rng(3))
    loss_tol, grad_tol = gradient_tolerance(model, params, data.X, data.Y, "float32")
    with strict_numerics():
        for eng in (ManualEngine(model, "float32", device, array="torch"), AutogradEngine(model, "float32", device)):
            X, Y, p = eng.asarray(data.X), eng.asarray(data.Y), eng.params(params)
            diffs = nondeterminism(lambda eng=eng, X=X, Y=Y, p=p: eng.loss_and_gradients(p, X, Y), runs=3)
            print(f"{name} {eng.name} float32 on {device}: run-to-run max |diff| {diffs}")
            assert diffs["0"] <= loss_tol
            for k in params:
                assert diffs[f"1.{k}"] <= np.max(grad_tol[k]), (k, diffs[f"1.{k}"])


def test_strict_numerics_sets_and_restores() -> None:
    before = (torch.get_float32_matmul_precision(), torch.are_deterministic_algorithms_enabled())
    torch.set_float32_matmul_precision("high")
    try:
        with strict_numerics():
            assert torch.get_float32_matmul_precision() == "highest"
            assert torch.are_deterministic_algorithms_enabled()
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "high"
        assert torch.are_deterministic_algorithms_enabled() == before[1]
    finally:
        torch.set_float32_matmul_precision(before[0])


def test_nondeterminism_reports_a_difference_and_not_a_repeat() -> None:
    calls = iter([1.0, 1.0 + 2**-20, 1.0])
    assert nondeterminism(lambda: {"a": np.float32(0.5)}) == {"a": 0.0}
    assert nondeterminism(lambda: {"a": next(calls)}, runs=3) == {"a": 2**-20}
