"""A facial-expression model folder and the object that answers for it.

A folder holds ``model.safetensors`` (the :class:`~dmd_pipeline.face.network.FaceExpressionNet` weights,
float16 when shipped) and ``config.json``::

    {"format": "dmd-face-expression", "format_version": 1,
     "network": FaceNetConfig.to_dict(), "crop": CropTemplate.to_dict(),
     "weights_sha256": "...", "weights_dtype": "float16", ...meta (training, metrics)}

Loading validates before it builds (size-bounded JSON, the network config's types and ranges, the crop
template), checks the weights' sha256 against the recorded one and that every weight is finite; every
problem is a :class:`~dmd_pipeline.errors.ModelFileError` naming the file. Nothing is unpickled.

:class:`FaceExpressionModel` is the hub for this model kind: it knows its classes, its crop framing and
how to score crops (``predict_crops``: batched, mirrored test-time average), embed them, or read a still
image (``predict_image``: the crop procedure of :mod:`dmd_pipeline.face.crop`, then the network).
The bundled model is ``fer-face-expression`` (:data:`BUNDLED_FACE_MODEL`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dmd_pipeline.analysis.result import ModelInfo, model_card
from dmd_pipeline.calibration import Calibration, log_probabilities
from dmd_pipeline.errors import ModelFileError
from dmd_pipeline.face.crop import FER_TEMPLATE, CropTemplate, FaceCrop, FaceFinder
from dmd_pipeline.face.folder import (
    BUNDLED_FACE_MODEL,
    FORMAT,
    FORMAT_VERSION,
    face_model_dir,
    is_face_model,
)
from dmd_pipeline.face.folder import read_face_config as _read_config
from dmd_pipeline.face.network import FaceExpressionNet, FaceNetConfig

__all__ = ["BUNDLED_FACE_MODEL", "FaceExpressionModel", "face_model_dir", "is_face_model", "save_face_model"]

_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def save_face_model(
    dest: str | Path,
    net: FaceExpressionNet,
    meta: dict[str, Any] | None = None,
    template: CropTemplate = FER_TEMPLATE,
    weights_dtype: str = "float16",
) -> Path:
    """Write ``dest/model.safetensors`` and ``dest/config.json`` (weights first, both atomically)."""
    from safetensors.torch import save

    from dmd_pipeline.models.checkpoint import versions
    from dmd_pipeline.utils import atomic_write_bytes, atomic_write_json, json_safe

    if weights_dtype not in _DTYPES:
        raise ValueError(f"weights_dtype must be one of {sorted(_DTYPES)}, got {weights_dtype!r}")
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: (
            v.detach().cpu().to(_DTYPES[weights_dtype]) if v.is_floating_point() else v.detach().cpu()
        ).contiguous()
        for k, v in net.state_dict().items()
    }
    blob = save(tensors, metadata={"format": "pt", "dmd_format": FORMAT})
    atomic_write_bytes(out / "model.safetensors", blob)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "network": net.config.to_dict(),
        "crop": template.to_dict(),
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "weights_dtype": weights_dtype,
        "versions": versions(),
        **(meta or {}),
    }
    atomic_write_json(out / "config.json", json_safe(config))
    return out


class FaceExpressionModel:
    """A loaded facial-expression network in eval mode, its crop framing and its metadata."""

    def __init__(
        self,
        net: FaceExpressionNet,
        template: CropTemplate,
        meta: dict[str, Any] | None = None,
        name: str = "",
        path: Path | None = None,
    ) -> None:
        self.net = net.eval()
        self.template = template
        self.meta = dict(meta or {})
        self.name = name or BUNDLED_FACE_MODEL
        self.path = path
        where = (path / "config.json") if path is not None else "face model meta"
        #: The temperature from its config.json (None: uncalibrated); :meth:`predict_crops` applies it.
        self.calibration: Calibration | None = Calibration.from_meta(self.meta, where)

    #: What kind of model this is among those the registry loads (a DMD model's is ``"dmd"``).
    kind = "face"

    def __repr__(self) -> str:
        return f"FaceExpressionModel(name={self.name!r}, classes={self.classes}, path='{self.path}')"

    @classmethod
    def load(cls, name_or_path: str | Path | None = None) -> FaceExpressionModel:
        """Load a face model folder (default: the bundled ``fer-face-expression``), validated as the module
        docstring says."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        folder = face_model_dir(name_or_path)
        cfg = _read_config(folder / "config.json")
        try:
            net_cfg = FaceNetConfig.from_dict(cfg.get("network") or {})
            template = CropTemplate.from_dict(cfg.get("crop") or {})
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelFileError(
                f"{folder / 'config.json'}: invalid network or crop settings ({exc})"
            ) from exc
        wpath = folder / "model.safetensors"
        if not wpath.is_file():
            raise ModelFileError(f"{wpath}: missing (a face model folder needs model.safetensors)")
        blob = wpath.read_bytes()
        digest = cfg.get("weights_sha256")
        if digest and hashlib.sha256(blob).hexdigest() != digest:
            raise ModelFileError(
                f"{wpath}: sha256 differs from the one recorded in config.json (corrupt copy?)"
            )
        try:
            tensors = load(blob)
        except (SafetensorError, ValueError) as exc:
            raise ModelFileError(f"{wpath}: not a readable safetensors file ({exc})") from exc
        net = FaceExpressionNet(net_cfg)
        state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
        bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise ModelFileError(f"{wpath}: non-finite weights in {bad[:3]}")
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelFileError(f"{wpath}: weights do not match the network in config.json ({exc})") from exc
        meta = {k: v for k, v in cfg.items() if k not in ("network", "crop")}
        # a malformed calibration block: ModelConfigError (a ModelFileError) naming the file
        return cls(net, template, meta, name=_model_name(name_or_path, folder), path=folder)

    # -- what the model answers -----------------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        """Class names in the order of the probability columns."""
        return self.net.classes

    @property
    def input_size(self) -> int:
        """Side of the square grayscale crop the network reads."""
        return self.template.size

    def _tensor(self, crops: np.ndarray) -> torch.Tensor:
        a = np.asarray(crops)
        if a.ndim == 2:
            a = a[None]
        s = self.input_size
        if a.ndim != 3 or a.shape[1:] != (s, s):
            raise ValueError(f"expected uint8 crops (N, {s}, {s}), got shape {a.shape}")
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.uint8)).float().div_(255).unsqueeze(1)

    @torch.no_grad()
    def predict_crops(
        self, crops: np.ndarray, batch: int = 256, flip: bool = True, calibrated: bool = True
    ) -> np.ndarray:
        """Class probabilities (N, C) float32 for uint8 crops (N, size, size); ``flip`` averages each crop
        with its mirror image (as the model was evaluated); ``calibrated`` applies the model's temperature
        to those averaged probabilities, ``softmax(log p / T)`` (:meth:`calibrate`)."""
        x = self._tensor(crops)
        out = [self.net.predict_proba(x[i : i + batch], flip=flip) for i in range(0, len(x), batch)]
        p = torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, len(self.classes)), np.float32)
        return self.calibrate(p) if calibrated else p

    def calibrate(self, probs: np.ndarray) -> np.ndarray:
        """Probabilities (N, C) as the calibrated ones, ``softmax(log p / T)`` with the model's temperature
        (unchanged without one; the argmax never changes). The temperature acts on the log of the mirrored
        average because that average, not a logit, is what the model outputs."""
        if self.calibration is None:
            return probs
        return self.calibration.probabilities(log_probabilities(probs)).astype(np.float32)

    def info(self) -> ModelInfo:
        """The ``models[].info`` block of an analysis result."""
        return ModelInfo(
            name=self.name,
            path=str(self.path or ""),
            task="classification",
            num_classes=len(self.classes),
            class_names=list(self.classes),
            modalities=["vision"],
            preset=None,
            feature_dims=None,
            seq_lens=None,
            aligned=None,
        )

    def card(self) -> dict[str, Any]:
        """What a result says about the model (``models[].card``): its description, licence, training
        data and validation metrics as its config.json records them (MODEL_CARD.md has the rest)."""
        return model_card(self.meta)

    @property
    def role(self) -> str:
        """``expression``: facial expression classes (what ``models[].role`` says of it)."""
        return "expression"

    @torch.no_grad()
    def embed_crops(self, crops: np.ndarray, batch: int = 256) -> np.ndarray:
        """Hidden-layer features (N, hidden) float32 for uint8 crops (the per-face embedding)."""
        x = self._tensor(crops)
        out = [self.net.embed(x[i : i + batch]) for i in range(0, len(x), batch)]
        return (
            torch.cat(out).numpy().astype(np.float32)
            if out
            else np.zeros((0, self.net.config.hidden), np.float32)
        )

    @torch.no_grad()
    def features(self, crops: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(embedding (N, hidden), probabilities (N, C)) float32 of uint8 crops (N, size, size), each the
        mean over the crop and its mirror image: one pass per view gives both (the probabilities equal
        :meth:`predict_crops`'s)."""
        x = self._tensor(crops)
        net = self.net
        embs, probs = [], []
        for i in range(0, len(x), batch):
            xb = x[i : i + batch]
            e1, e2 = net.embed(xb), net.embed(torch.flip(xb, dims=[3]))
            p = (torch.softmax(net.classifier(e1), dim=1) + torch.softmax(net.classifier(e2), dim=1)) / 2
            embs.append((e1 + e2) / 2)
            probs.append(p)
        if not embs:
            return (
                np.zeros((0, self.net.config.hidden), np.float32),
                np.zeros((0, len(self.classes)), np.float32),
            )
        return torch.cat(embs).numpy().astype(np.float32), torch.cat(probs).numpy().astype(np.float32)

    def crop_face(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """This model's crop of the face with the given normalised landmarks in an RGB or gray image."""
        from dmd_pipeline.face.crop import aligned_crop

        return aligned_crop(image, landmarks, self.template)

    def predict_image(self, image: np.ndarray, finder: FaceFinder) -> tuple[np.ndarray, FaceCrop]:
        """Probabilities (C,) for the largest face of a still image (the whole image when none is found),
        and the crop used."""
        fc = finder.crop(image, self.template)
        return self.predict_crops(fc.crop[None])[0], fc


def _model_name(ref: str | Path | None, folder: Path) -> str:
    """A bundled model's name, else the folder's name (as DMD model folders are named)."""
    if ref is None:
        return BUNDLED_FACE_MODEL
    p = Path(ref).expanduser()
    return folder.resolve().name if p.is_dir() else str(ref)
