"""How well trained parameters do on data: the accuracy of a twin's own predictions."""

from __future__ import annotations

import numpy as np

from gradtwin.data import Dataset
from gradtwin.training.engines import Engine


def accuracy(engine: Engine, params: dict[str, np.ndarray], data: Dataset) -> float:
    """Fraction of rows whose class the engine's twin predicts right, in the engine's dtype and device."""
    # whole numbers stored as floats (0/1 targets of a model file) are class labels too
    if not (np.issubdtype(data.Y.dtype, np.integer) or np.all(data.Y == np.round(data.Y))):
        raise ValueError(f"accuracy needs integer class labels; {data.name} has Y of dtype {data.Y.dtype}")
    predicted = engine.to_numpy(engine.predict(engine.params(params), engine.asarray(data.X)))  # (n,)
    return float(np.mean(predicted == data.Y))
