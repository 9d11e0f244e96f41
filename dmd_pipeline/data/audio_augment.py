"""Audio augmentations for training the voice-emotion model on other recording conditions.

Each augmentation is a pure function of (16 kHz mono signal, seed): the same clip and seed give the same
output, so a stored augmented copy of a corpus is reproducible. Names (``augmenter(name)``):

* ``none``: the signal unchanged;
* ``noise``: white noise at a random SNR in [5, 20] dB;
* ``speed``: resampled to a random speed factor in [0.9, 1.1] (pitch and tempo change together);
* ``noise+speed``: both, speed first.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["AUGMENTATIONS", "add_noise", "augmenter", "change_speed"]


def add_noise(y: np.ndarray, seed: int, snr_db: tuple[float, float] = (5.0, 20.0)) -> np.ndarray:
    """White noise at an SNR drawn uniformly from ``snr_db`` (signal power over the whole clip)."""
    rng = np.random.default_rng(seed)
    p = float(np.mean(y.astype(np.float64) ** 2)) + 1e-12
    snr = rng.uniform(*snr_db)
    noise = rng.standard_normal(len(y)) * np.sqrt(p / 10 ** (snr / 10))
    return (y + noise).astype(np.float32)


def change_speed(y: np.ndarray, seed: int, factors: tuple[float, float] = (0.9, 1.1)) -> np.ndarray:
    """Play back at a speed factor drawn from ``factors`` (linear-interpolation resampling)."""
    rng = np.random.default_rng(seed + 7919)
    f = rng.uniform(*factors)
    n = max(1, int(round(len(y) / f)))
    return np.interp(np.arange(n) * f, np.arange(len(y)), y).astype(np.float32)


AUGMENTATIONS: dict[str, Callable[[np.ndarray, int], np.ndarray] | None] = {
    "none": None,
    "noise": add_noise,
    "speed": change_speed,
    "noise+speed": lambda y, s: add_noise(change_speed(y, s), s),
}


def augmenter(name: str) -> Callable[[np.ndarray, int], np.ndarray] | None:
    """The augmentation of a name (``None`` for ``none``); an unknown name raises ValueError."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; choose one of {', '.join(AUGMENTATIONS)}")
    return AUGMENTATIONS[name]
