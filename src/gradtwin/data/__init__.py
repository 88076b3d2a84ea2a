"""Data: the Dataset and its one validation gate, CSV files, bundled and synthetic sets."""

from gradtwin.data.bundled import (
    BUNDLED,
    load_breast_cancer,
    load_diabetes_all,
    load_diabetes_bmi,
    load_digits,
    load_iris,
    load_wine,
)
from gradtwin.data.csv_file import load_csv
from gradtwin.data.dataset import Dataset, as_labels_or_real, as_real, check_weight, check_xy
from gradtwin.data.names import load_names, windows
from gradtwin.data.prepare import holdout, standardize
from gradtwin.data.synthetic import synthetic_classes, synthetic_linear1d

__all__ = [
    "BUNDLED",
    "Dataset",
    "as_labels_or_real",
    "as_real",
    "check_weight",
    "check_xy",
    "holdout",
    "load_breast_cancer",
    "load_csv",
    "load_diabetes_all",
    "load_diabetes_bmi",
    "load_digits",
    "load_iris",
    "load_names",
    "load_wine",
    "standardize",
    "synthetic_classes",
    "synthetic_linear1d",
    "windows",
]
