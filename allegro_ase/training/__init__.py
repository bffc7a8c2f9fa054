"""Training Allegro and NequIP models on labelled frames (``allegro-ase train CONFIG``)."""

from .config import TrainConfig
from .data import LabelledGraph, frame_to_graph, join, split_indices
from .evaluation import ErrorMetrics, evaluate, predict
from .preparation import PreparedData, prepare, read_and_split
from .trainer import Trainer, train

__all__ = [
    "ErrorMetrics",
    "LabelledGraph",
    "PreparedData",
    "TrainConfig",
    "Trainer",
    "evaluate",
    "frame_to_graph",
    "join",
    "predict",
    "prepare",
    "read_and_split",
    "split_indices",
    "train",
]
