"""Training: the one loop, the engines with their one update step, the exact and distributed engines."""

from gradtwin.training import distributed
from gradtwin.training.engines import AutogradEngine, Engine, ManualEngine, TapeEngine, update
from gradtwin.training.exact import ExactEngine
from gradtwin.training.factory import ENGINES, THREE, TWINS, make_engine, make_twin
from gradtwin.training.loop import History, TrainResult, train

__all__ = [
    "ENGINES",
    "THREE",
    "TWINS",
    "AutogradEngine",
    "Engine",
    "ExactEngine",
    "History",
    "ManualEngine",
    "TapeEngine",
    "TrainResult",
    "distributed",
    "make_engine",
    "make_twin",
    "train",
    "update",
]
