"""gradtwin: every gradient-descent model built twice, by hand and by autograd, proven equal."""

from gradtwin.data import Dataset, load_csv, load_diabetes_bmi, standardize, synthetic_linear1d
from gradtwin.errors import DataError, DivergedError, GradtwinError, UsageError
from gradtwin.estimators import GradientDescentClassifier, GradientDescentRegressor
from gradtwin.model_file import from_file as model_from_file
from gradtwin.models import MODELS, get_model, register
from gradtwin.parity.function_check import FunctionReport, assert_function_matches, check_function
from gradtwin.parity.gradcheck import GradientReport, ParamReport, assert_gradients_match, check_gradients
from gradtwin.parity.model_check import check_model, check_point
from gradtwin.parity.userfile import check_file
from gradtwin.steps import recording, tap
from gradtwin.training import AutogradEngine, History, ManualEngine, TrainResult, distributed, make_engine, train

__all__ = [
    "MODELS",
    "AutogradEngine",
    "DataError",
    "Dataset",
    "DivergedError",
    "FunctionReport",
    "GradientDescentClassifier",
    "GradientDescentRegressor",
    "GradientReport",
    "GradtwinError",
    "History",
    "ManualEngine",
    "ParamReport",
    "TrainResult",
    "UsageError",
    "assert_function_matches",
    "assert_gradients_match",
    "check_file",
    "check_function",
    "check_gradients",
    "check_model",
    "check_point",
    "distributed",
    "get_model",
    "load_csv",
    "load_diabetes_bmi",
    "make_engine",
    "model_from_file",
    "recording",
    "register",
    "standardize",
    "synthetic_linear1d",
    "tap",
    "train",
]
__version__ = "0.1.0"
