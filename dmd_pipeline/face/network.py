"""A small VGG-style facial-expression network for 48x48 grayscale face crops (FER2013's format).

``FaceExpressionNet`` is four blocks of (3x3 conv, BN, ReLU) x 2 + 2x2 max-pool at widths ``w, 2w, 4w, 8w``,
then global average pooling, a hidden layer and a linear layer over the classes. Global pooling makes the
head independent of the input size, so a model trained on 48x48 also accepts other sizes (it is only
meaningful at the size it was trained on, recorded in its config).

Input: float tensor (N, 1, H, W) of pixel values in [0, 1]; the network subtracts 0.5 and divides by 0.25
itself, so callers never need to know the normalisation. Output: logits (N, n_classes).
``embed`` gives the hidden-layer features (the per-face embedding).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

__all__ = ["FER_CLASSES", "FaceNetConfig", "FaceExpressionNet"]

FER_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


@dataclass
class FaceNetConfig:
    """Architecture of a :class:`FaceExpressionNet` (everything needed to rebuild it before loading)."""

    width: int = 24
    hidden: int = 256
    dropout: float = 0.4
    input_size: int = 48
    classes: list[str] = field(default_factory=lambda: list(FER_CLASSES))

    def to_dict(self) -> dict:
        """Plain JSON-able dict (for config.json)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FaceNetConfig:
        """Build from a config.json dict, checking types and ranges (a bad file fails before any tensor)."""
        known = {k: d[k] for k in ("width", "hidden", "dropout", "input_size", "classes") if k in d}
        cfg = cls(**known)
        if not (isinstance(cfg.width, int) and 1 <= cfg.width <= 256):
            raise ValueError(f"width must be an integer in 1..256, got {cfg.width!r}")
        if not (isinstance(cfg.hidden, int) and 1 <= cfg.hidden <= 4096):
            raise ValueError(f"hidden must be an integer in 1..4096, got {cfg.hidden!r}")
        if not (isinstance(cfg.input_size, int) and 16 <= cfg.input_size <= 256):
            raise ValueError(f"input_size must be an integer in 16..256, got {cfg.input_size!r}")
        if not (0.0 <= float(cfg.dropout) < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {cfg.dropout!r}")
        if not (
            isinstance(cfg.classes, list)
            and len(cfg.classes) >= 2
            and all(isinstance(c, str) and c for c in cfg.classes)
            and len(set(cfg.classes)) == len(cfg.classes)
        ):
            raise ValueError("classes must be a list of at least 2 distinct non-empty names")
        return cfg


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class FaceExpressionNet(nn.Module):
    """VGG-style expression classifier over (N, 1, H, W) grayscale crops in [0, 1] (see module docstring)."""

    def __init__(self, config: FaceNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or FaceNetConfig()
        w = self.config.width
        self.features = nn.Sequential(
            _block(1, w), _block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 8 * w)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.hidden = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(self.config.dropout),
            nn.Linear(8 * w, self.config.hidden),
            nn.BatchNorm1d(self.config.hidden),
            nn.ReLU(inplace=True),
        )
        self.drop = nn.Dropout(self.config.dropout)
        self.classifier = nn.Linear(self.config.hidden, len(self.config.classes))

    @property
    def classes(self) -> list[str]:
        """Class names, in the order of the output columns."""
        return list(self.config.classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden-layer features (N, hidden) for crops (N, 1, H, W) in [0, 1]."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected (N, 1, H, W) grayscale crops, got shape {tuple(x.shape)}")
        return self.hidden(self.pool(self.features((x - 0.5) / 0.25)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, n_classes)."""
        return self.classifier(self.drop(self.embed(x)))

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor, flip: bool = True) -> torch.Tensor:
        """Class probabilities (N, n_classes) in eval mode; ``flip`` averages with the mirrored crop."""
        was = self.training
        self.eval()
        try:
            p = torch.softmax(self(x), dim=1)
            if flip:
                p = (p + torch.softmax(self(torch.flip(x, dims=[3])), dim=1)) / 2
        finally:
            self.train(was)
        return p
