"""New names from a trained character model: one character at a time, drawn from the softmax of its logits.

The model's manual twin gives the logits (its `forward`, last value). A model with batch norm
(whose twin has `statistics`) normalises with the mean and biased variance of the TRAINING data's
pre-activations, computed once from all of `data` before the first draw: a batch of one
context has no statistics of its own, and these are the ones the trained weights were fitted with.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradtwin.data import Dataset
from gradtwin.errors import UsageError
from gradtwin.models import Model

MAX_LENGTH = 50  # characters per name at most: a model that never draws the end marker still stops


def sample_names(model: Model, params: dict[str, Any], data: Dataset, count: int = 5, seed: int = 0) -> list[str]:
    """`count` names drawn from `model` at `params`, seeded; `data` are the windows it was trained on.

    Each name starts from `context` end markers ('.', index 0); the next character is drawn from
    softmax(Z2) of the current context, appended, and the context slides on, until '.' is drawn
    (or MAX_LENGTH characters). The characters are `data.class_names`.
    """
    if data.class_names is None or data.class_names[0] != ".":
        raise UsageError(f"sample_names needs character data whose class 0 is the end marker '.'; got {data.name}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise UsageError(f"count must be a whole number >= 0 (names to draw); got {count!r}")
    twin = model.manual
    if not hasattr(twin, "forward") or model.task != "classification":
        raise UsageError(f"sample_names needs a character model with a forward pass; got model {model.name}")
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    statistics = getattr(twin, "statistics", None)
    options = {} if statistics is None else {"stats": statistics(p, data.X)}  # (h,), (h,) from the training rows
    context = int(data.X.shape[1])
    rng = np.random.default_rng(seed)
    names = []
    for _ in range(count):
        window = [0] * context
        chars: list[str] = []
        while len(chars) < MAX_LENGTH:
            Z = twin.forward(p, np.asarray([window], dtype=np.float64), **options)[-1][0]  # (V,) logits
            P = np.exp(Z - np.max(Z))  # (V,) stable: the largest term is 1
            nxt = int(rng.choice(P.size, p=P / np.sum(P)))
            if nxt == 0:
                break
            chars.append(data.class_names[nxt])
            window = [*window[1:], nxt]
        names.append("".join(chars))
    return names
