"""Training: the official DMD recipe (trainer.py) and MMSA-compatible metrics (metrics.py)."""

from dmd_pipeline.training.metrics import classification_metrics, compute_metrics, regression_metrics
from dmd_pipeline.training.trainer import TrainConfig, Trainer, TrainResult, evaluate, set_seed

__all__ = [
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "classification_metrics",
    "compute_metrics",
    "evaluate",
    "regression_metrics",
    "set_seed",
]
