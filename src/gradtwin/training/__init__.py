"""Training: the one loop, the engines with their one update step, the exact and distributed engines."""

from gradtwin.training import distributed
from gradtwin.training.engines import AutogradEngine, Engine, ManualEngine, update
from gradtwin.training.exact import ExactEngine
from gradtwin.training.factory import ENGINES, TWINS, make_engine, make_twin
from gradtwin.training.loop import History, TrainResult, train

__all__ = [
    "ENGINES",
    "TWINS",
    "AutogradEngine",
    "Engine",
    "ExactEngine",
    "History",
    "ManualEngine",
    "TrainResult",
    "distributed",
    "make_engine",
    "make_twin",
    "train",
    "update",
]
