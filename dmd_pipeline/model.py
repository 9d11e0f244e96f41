"""The trained model as the hub: a loaded model answers every question the rest of the code asks a model.

:class:`FeatureSpec` is what a model records about its features at training time (the extraction settings,
the columns of each modality, aligned or not, the clip length of a short-clip model), read once from its
``config.json`` meta here and nowhere else. :class:`LoadedModel` holds the network and that spec and answers:
the extraction settings it needs (:meth:`LoadedModel.extraction_config`), the columns it takes from an
extraction (:meth:`LoadedModel.columns`, :meth:`LoadedModel.check_dims`), its input dims, its input for a
clip or a span of one (:meth:`LoadedModel.inputs`), zeros for the modalities it does not use
(:meth:`LoadedModel.zero_fill`), and its outputs (:meth:`LoadedModel.predict`, :meth:`LoadedModel.forward`).
Analysis, evaluation and serving ask it; none of them reads a config key of a model.

A voice model may declare how its audio frames are normalised before they are fed (``audio_norm`` in its
``config.json``, a :class:`~dmd_pipeline.data.feature_norm.FrameNorm`: e.g. each analysis window's own
statistics blended with the training set's): :attr:`LoadedModel.audio_norm` applies it in :meth:`LoadedModel.inputs`,
the one place every analysis, evaluation and serving path builds a model input, exactly as the training
adapter (:mod:`dmd_pipeline.data.store_inputs`) did.

A classifier's outputs are calibrated here: the temperature stored in its ``config.json``
(:attr:`LoadedModel.calibration`, a :class:`~dmd_pipeline.calibration.Calibration` validated on load) divides
the logits that :meth:`LoadedModel.predict` and :meth:`LoadedModel.forward` return, so every softmax of them
downstream gives calibrated probabilities; ``calibrated=False`` gives the network's raw logits (what a
calibration is fitted and measured on).

Finding and loading models (bundled names, folders, defaults) is :mod:`dmd_pipeline.analysis.registry`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dmd_pipeline.analysis.result import MODALITIES, ModelInfo, model_card
from dmd_pipeline.calibration import Calibration
from dmd_pipeline.data.feature_norm import FrameNorm
from dmd_pipeline.errors import ConfigError, InputError
from dmd_pipeline.extractors.base import FrameFeatures
from dmd_pipeline.extractors.words import Segment
from dmd_pipeline.feature_config import ExtractionConfig
from dmd_pipeline.features import FeatureBundle
from dmd_pipeline.model_input import select_columns, to_model_inputs

if TYPE_CHECKING:
    from dmd_pipeline.pipeline import Extractor

#: The input arrays of each modality in a split of model inputs (``text_bert``: token ids of a use_bert model).
_INPUT_KEYS: dict[str, tuple[str, ...]] = {
    "text": ("text", "text_bert"),
    "audio": ("audio",),
    "vision": ("vision",),
}


@dataclass(frozen=True)
class FeatureSpec:
    """What a model recorded about its features when it was trained (``meta.feature_spec``).

    A model trained on a ``dmd extract`` pickle keeps the extractor's own spec one level down
    (``meta.feature_spec.feature_spec``: ``config``, ``names``, ``dims``, ``acoustic``), next to the data's
    ``aligned`` and ``class_names``; a model whose meta was written by hand (the bundled text model) keeps it
    at ``meta.feature_spec``. :meth:`from_meta` reads both layouts once.
    """

    #: The extractor's spec as recorded (empty when unknown): ``config``, ``names``, ``dims``, ``acoustic``...
    extraction: dict[str, Any] = field(default_factory=dict)
    #: The extraction settings (:class:`~dmd_pipeline.feature_config.ExtractionConfig` fields) recorded.
    config: dict[str, Any] = field(default_factory=dict)
    #: Column names of the audio/vision features at training time, where recorded.
    names: dict[str, list[str]] = field(default_factory=dict)
    #: The acoustic feature setting (``librosa`` when not recorded).
    acoustic: str = "librosa"
    #: The visual feature setting (``landmarks`` when not recorded; :mod:`dmd_pipeline.face.features`).
    visual: str = "landmarks"
    #: Trained on word-aligned features (None: not recorded).
    aligned: bool | None = None
    #: Length of the clips a short-clip model was trained on (None: not a short-clip model).
    analysis_window_s: float | None = None
    #: Class names of the training data (a ``dmd extract`` pickle of labels), where recorded.
    data_class_names: list[str] | None = None
    #: The text encoder whose frozen features a text model was trained on, where recorded.
    text_features_encoder: str | None = None

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> FeatureSpec:
        """The spec of a model's meta block (``config.json`` without its ``config``)."""
        data = meta.get("feature_spec")
        data = data if isinstance(data, dict) else {}
        inner = data.get("feature_spec")
        if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
            extraction = inner
        else:
            extraction = data if isinstance(data.get("config"), dict) else {}
        config = dict(extraction.get("config") or {})
        names = {
            m: [str(n) for n in v] for m, v in (extraction.get("names") or {}).items() if isinstance(v, list)
        }
        aligned = meta.get("aligned")
        if aligned is None:
            aligned = data.get("aligned")
        class_names = data.get("class_names")
        encoder = meta.get("text_features_encoder")
        return cls(
            extraction=extraction,
            config=config,
            names=names,
            acoustic=str(config.get("acoustic") or extraction.get("acoustic") or "librosa"),
            visual=str(config.get("visual") or extraction.get("visual") or "landmarks"),
            aligned=None if aligned is None else bool(aligned),
            analysis_window_s=_positive(meta.get("analysis_window_s", data.get("analysis_window_s"))),
            data_class_names=[str(c) for c in class_names] if isinstance(class_names, list) else None,
            text_features_encoder=str(encoder) if encoder else None,
        )


def _positive(value: Any) -> float | None:
    try:
        win = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return win if win is not None and win > 0 else None


@dataclass
class LoadedModel:
    """A DMD system in eval mode and everything it knows about itself (see the module docstring)."""

    system: Any  # dmd_pipeline.models.DMDSystem
    meta: dict[str, Any]
    name: str
    path: Path
    modalities: list[str]
    task: str
    class_names: list[str] | None
    extra: dict[str, Any] = field(default_factory=dict)
    spec: FeatureSpec = field(init=False)
    #: The classifier's temperature from its config.json (None: uncalibrated, or not a classifier).
    calibration: Calibration | None = field(init=False)
    #: How the audio frames are normalised before they are fed (``audio_norm`` in its config.json; ``none``
    #: when not declared).
    audio_norm: FrameNorm = field(init=False)
    #: What kind of model this is among those the registry loads (a face-expression model's is ``"face"``).
    kind: ClassVar[str] = "dmd"

    def __post_init__(self) -> None:
        self.spec = FeatureSpec.from_meta(self.meta)
        self.calibration = Calibration.from_meta(
            self.meta, self.path / "config.json", classifier=self.task == "classification"
        )
        try:
            self.audio_norm = FrameNorm.from_meta(self.meta.get("audio_norm"))
            dim = self.audio_norm.dim
            if dim is not None and dim != int(self.config.feature_dims[1]):
                raise ValueError(
                    f"it is for {dim} audio columns, the model takes {self.config.feature_dims[1]}"
                )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.path / 'config.json'}: audio_norm is unusable: {exc}") from exc

    def __repr__(self) -> str:
        """One line (the torch module inside would print hundreds)."""
        classes = f", classes={self.class_names}" if self.class_names else ""
        return (
            f"LoadedModel(name={self.name!r}, task={self.task!r}, modalities={self.modalities}{classes}, "
            f"path='{self.path}')"
        )

    # ---- what it is ------------------------------------------------------------------------------------
    @property
    def config(self) -> Any:
        """The model's DMDConfig."""
        return self.system.config

    @property
    def aligned(self) -> bool | None:
        """Whether the model was trained on word-aligned features (None when neither the meta nor the preset
        says)."""
        if self.spec.aligned is not None:
            return self.spec.aligned
        preset = str(getattr(self.config, "name", "") or "")
        if "unaligned" in preset:
            return False
        if "aligned" in preset:
            return True
        return None

    @property
    def extraction(self) -> dict[str, Any]:
        """The extractor's spec the model was trained on (``config``, ``names``, ``dims``, ``acoustic``...)."""
        return self.spec.extraction

    def feature_names(self, modality: str) -> list[str] | None:
        """Column names of a modality's input features at training time (``"audio"``/``"vision"``), if recorded."""
        return self.spec.names.get(modality)

    @property
    def role(self) -> str:
        """``sentiment`` (regression) or ``emotion`` (classification)."""
        return "sentiment" if self.task == "regression" else "emotion"

    @property
    def acoustic_setting(self) -> str:
        """The acoustic feature setting the model was trained on (``librosa`` when not recorded)."""
        return self.spec.acoustic

    @property
    def visual_setting(self) -> str:
        """The visual feature setting the model was trained on (``landmarks`` when not recorded)."""
        return self.spec.visual

    @property
    def analysis_window_s(self) -> float | None:
        """Length of the clips a short-clip model was trained on (``meta.analysis_window_s``), else None."""
        return self.spec.analysis_window_s

    @property
    def preset(self) -> str | None:
        """The name of the preset the model was trained from (``meta.preset``), if recorded."""
        preset = self.meta.get("preset")
        return str(preset) if preset is not None else None

    @property
    def use_bert(self) -> bool:
        """Whether the model fine-tunes a text encoder inside (its text input is token ids, ``text_bert``)."""
        return bool(getattr(self.config, "use_bert", False))

    @property
    def dims(self) -> dict[str, int]:
        """The model's input feature dims by modality."""
        return dict(zip(MODALITIES, (int(x) for x in self.config.feature_dims), strict=True))

    @property
    def sign_accuracy(self) -> float | None:
        """A regression model's binary (sign) accuracy on its validation split (``metrics.valid.Has0_acc_2``
        of its meta): how far its sentiment sign is evidence of valence (:mod:`dmd_pipeline.fusion`); None for
        a classifier, or when its metrics do not say."""
        if self.task != "regression":
            return None
        valid = (self.meta.get("metrics") or {}).get("valid") or {}
        acc = valid.get("Has0_acc_2")
        try:
            acc = float(acc)
        except (TypeError, ValueError):
            return None
        return acc if 0.0 <= acc <= 1.0 else None

    @property
    def unused_modalities(self) -> list[str]:
        """The modalities the model was not trained with (fed as zeros)."""
        return [m for m in MODALITIES if m not in self.modalities]

    def info(self) -> ModelInfo:
        """The ``model`` block of an analysis result."""
        cfg = self.config
        return ModelInfo(
            name=self.name,
            path=str(self.path),
            task=self.task,
            num_classes=int(getattr(cfg, "num_classes", 1)),
            class_names=self.class_names,
            modalities=list(self.modalities),
            preset=getattr(cfg, "name", None),
            feature_dims=[int(x) for x in getattr(cfg, "feature_dims", ())] or None,
            seq_lens=[int(x) for x in getattr(cfg, "seq_lens", ())] or None,
            aligned=self.aligned,
        )

    def card(self) -> dict[str, Any]:
        """What a result says about the model (``models[].card``): description, licence, training data and
        validation metrics, as its config.json records them."""
        return model_card(self.meta)

    # ---- the features it needs ---------------------------------------------------------------------------
    @property
    def text_encoder(self) -> str | None:
        """The text encoder the model's text features came from (None: the bundled one / not recorded)."""
        if self.spec.config.get("text_model"):
            return str(self.spec.config["text_model"])
        cfg = self.config
        if self.use_bert and getattr(cfg, "text_encoder", None):
            return str(cfg.text_encoder)
        return None

    @property
    def text_language(self) -> str | None:
        """The language of the words the model reads (a Whisper code), None for a model without text.

        ``text_language`` in its meta, else ``en``: every text encoder a model here was trained on (the
        bundled all-MiniLM-L6-v2, CMU-MOSI transcripts) is English. The analysis does not score words in
        another language with it (the words channel says ``n/a (language pl)``)."""
        if "text" not in self.modalities:
            return None
        return str(self.meta.get("text_language") or "en")

    def text_encoder_folder(self) -> Path:
        """The local folder of the text encoder the model reads: the one inside a use_bert model, else the one
        whose frozen features it was trained on (the bundled MiniLM when not recorded; sha256-checked)."""
        # here: the checkpoint module imports torch, which the CLI's start-up does not need
        from dmd_pipeline.models.checkpoint import BUNDLED_TEXT_ENCODER, resolve_text_encoder

        ref = self.config.text_encoder if self.use_bert else self.spec.text_features_encoder
        return resolve_text_encoder(ref or BUNDLED_TEXT_ENCODER)

    def extraction_config(self, device: str = "cpu") -> ExtractionConfig:
        """The :class:`~dmd_pipeline.feature_config.ExtractionConfig` the model was trained with.

        The known keys of the recorded settings (defaults where nothing is recorded, e.g. the bundled text
        model), ``acoustic`` from the spec when the settings predate it, ``aligned`` and ``seq_lens`` from the
        model; the text encoder of a ``use_bert`` / frozen-feature text model when the settings do not name
        one. ``device`` is where the text encoder runs (it does not change the features).
        """
        # here: the checkpoint module imports torch, which the CLI's start-up does not need
        from dmd_pipeline.models.checkpoint import BUNDLED_TEXT_ENCODER, resolve_text_encoder

        spec = self.extraction or {}
        known = {f.name for f in dataclasses.fields(ExtractionConfig)}
        kw: dict[str, Any] = {k: v for k, v in self.spec.config.items() if k in known}
        if "acoustic" not in kw and isinstance(spec.get("acoustic"), str):
            kw["acoustic"] = spec["acoustic"]
        cfg = self.config
        aligned = self.aligned
        kw["aligned"] = bool(kw.get("aligned", True) if aligned is None else aligned)
        kw["seq_lens"] = tuple(int(x) for x in cfg.seq_lens)
        if not kw.get("text_model"):
            ref = cfg.text_encoder if self.use_bert else self.spec.text_features_encoder
            if ref and str(ref) != BUNDLED_TEXT_ENCODER:
                kw["text_model"] = str(resolve_text_encoder(ref))
        kw["device"] = "cuda" if str(device).startswith("cuda") else "cpu"
        try:
            return ExtractionConfig(**kw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"model {self.name!r}: its recorded extraction settings are unusable: {exc}"
            ) from exc

    def columns(self, ext: Extractor, modality: str) -> list[str] | None:
        """The ``modality`` ("audio"/"vision") columns of ``ext``'s frames the model was trained on; None: all
        of them, as they are. Recorded feature names win; a model on an encoder setting (``whisper``,
        ``whisper-base``, ...) without recorded names served by its ``+librosa`` extraction gets the encoder's
        columns. ConfigError (naming the model) when the
        extraction lacks some of them."""
        feats = ext.acoustic if modality == "audio" else ext.visual
        avail = list(feats.feature_names)
        names = self.feature_names(modality)
        if names is None:
            if (
                modality == "audio"
                and self.acoustic_setting != "librosa"
                and ext.config.acoustic == f"{self.acoustic_setting}+librosa"
            ):  # the encoder's columns come first; the librosa ones follow
                lib = set(getattr(getattr(ext.acoustic, "librosa", None), "feature_names", []) or [])
                names = [n for n in avail if n not in lib]
            else:
                return None
        if names == avail:
            return None
        have = set(avail)
        missing = [n for n in names if n not in have]
        if missing:
            raise ConfigError(
                f"model {self.name!r} needs {modality} feature columns that this extraction does not produce "
                f"({len(missing)} of {len(names)} missing, e.g. {', '.join(missing[:3])}): it was trained on "
                f"{self.setting_text(modality)}, the extraction is {extraction_setting_text(ext, modality)}"
            )
        return names

    def setting_text(self, modality: str) -> str:
        """Words for the feature setting the model was trained on, for error messages."""
        if modality == "audio":
            return f"acoustic setting {self.acoustic_setting!r}"
        if modality == "text":
            return f"text encoder {self.text_encoder or 'bundled all-MiniLM-L6-v2'}"
        keep = bool(self.spec.config.get("keep_landmarks", False))
        return f"visual setting {self.visual_setting!r} (keep_landmarks={keep})"

    def check_dims(
        self,
        ext: Extractor,
        present: Sequence[str],
        columns: dict[str, list[str] | None] | None = None,
    ) -> dict[str, list[str] | None]:
        """The model's input dims (after taking its columns) must match what it was trained on, for the
        modalities it uses that are present; returns its columns per modality (see :meth:`columns`).
        ConfigError names the model, the expected and the given dims and the settings involved."""
        want = self.dims
        cols: dict[str, list[str] | None] = dict(columns or {})
        for m in self.modalities:
            if m not in present or (m == "text" and self.use_bert):
                continue
            if m == "text":
                got = int(ext.text_encoder.dim)
            else:
                if m not in cols:
                    cols[m] = self.columns(ext, m)
                names = cols[m]
                got = (
                    len(names)
                    if names is not None
                    else int((ext.acoustic if m == "audio" else ext.visual).dim)
                )
            if got != want[m]:
                picked = " after taking its columns" if cols.get(m) is not None else ""
                raise ConfigError(
                    f"model {self.name!r} expects {want[m]}-d {m} features but the extraction gives {got}-d{picked} "
                    f"(extraction: {extraction_setting_text(ext, m)}; model trained on {self.setting_text(m)}); "
                    "the model was trained with other feature settings (see its config.json feature_spec)"
                )
        return cols

    # ---- its inputs ------------------------------------------------------------------------------------
    def inputs(
        self,
        bundle: FeatureBundle,
        span: Segment | None = None,
        *,
        ext: Extractor | None = None,
        present: Sequence[str] = (),
        columns: dict[str, list[str] | None] | None = None,
        aligned: bool | None = None,
    ) -> dict[str, np.ndarray]:
        """The model input (``text`` or, for a use_bert model, its token ids, ``audio``, ``vision``) of a
        whole clip's bundle, or of one ``span`` of it (a transcript Segment: an utterance or a window).

        A whole clip (``span`` None) is built as ``dmd extract`` builds training data: the columns the model
        was trained on, ``aligned`` as the extraction was, the unused modalities zero-filled; InputError
        (stage ``modalities``) when none of the model's modalities is in the clip. A span takes the frames in
        its time range restricted to ``columns`` (see :meth:`check_dims`), its words re-encoded by ``ext``'s
        text encoder, only the modalities in ``present``, shaped as the model was trained.
        """
        if span is None:
            return self._clip_inputs(bundle, bool(aligned))
        assert ext is not None, "a span's input needs the extractor (its text encoder)"
        return self._span_inputs(bundle, span, ext, present, columns)

    def _span_inputs(
        self,
        bundle: FeatureBundle,
        seg: Segment,
        ext: Extractor,
        present: Sequence[str],
        columns: dict[str, list[str] | None] | None,
    ) -> dict[str, np.ndarray]:
        cfg = self.config
        lt = int(cfg.seq_lens[0])
        dims = self.dims
        use = set(self.modalities)

        def cols(m: str) -> list[str] | None:
            return columns[m] if columns is not None and m in columns else self.feature_names(m)

        text = None
        if "text" in use and "text" in present and seg.words:
            text = ext.text_encoder.encode([w.text for w in seg.words], max_len=lt)
        acoustic = visual = None
        if "audio" in use and "audio" in present:  # a silent track is left out of present: zeros
            acoustic = self._normalised(
                select_columns(_slice(bundle.acoustic, seg.start, seg.end), cols("audio"), "audio")
            )
        if "vision" in use and "vision" in present:
            visual = select_columns(_slice(bundle.visual, seg.start, seg.end), cols("vision"), "vision")
        sub = FeatureBundle(
            text=text,
            acoustic=acoustic,
            visual=visual,
            words=list(seg.words),
            segments=[seg],
            metadata={"dims": dims},
        )
        aligned = self.aligned if self.aligned is not None else bool(ext.config.aligned)
        inputs = to_model_inputs(sub, aligned=bool(aligned), seq_lens=tuple(cfg.seq_lens), dims=dims)
        key_text = "text_bert" if self.use_bert else "text"
        return {"text": inputs[key_text], "audio": inputs["audio"], "vision": inputs["vision"]}

    def _clip_inputs(self, bundle: FeatureBundle, aligned: bool) -> dict[str, np.ndarray]:
        cfg = self.config
        use_bert = self.use_bert
        dims = self.dims
        lt, la, lv = (int(x) for x in cfg.seq_lens)
        use = [m for m in MODALITIES if m in self.modalities]
        present = list(bundle.modalities)
        if not any(m in present for m in use):
            path = bundle.metadata.get("source", {}).get("path")
            raise InputError(
                path,
                f"none of the modalities the model uses ({', '.join(use)}) is in the file (it has "
                f"{', '.join(present) or 'nothing usable'})",
                stage="modalities",
            )
        sub = dataclasses.replace(
            bundle,
            acoustic=self._normalised(select_columns(bundle.acoustic, self.feature_names("audio"), "audio")),
            visual=select_columns(bundle.visual, self.feature_names("vision"), "vision"),
        )
        got = {
            "text": None if sub.text is None or use_bert else np.asarray(sub.text.features).shape[-1],
            "audio": None if sub.acoustic is None else sub.acoustic.values.shape[-1],
            "vision": None if sub.visual is None else sub.visual.values.shape[-1],
        }
        for m in use:
            if got[m] is not None and int(got[m]) != dims[m]:
                raise ConfigError(
                    f"model {self.name!r} expects {dims[m]}-d {m} features but the extraction gives {got[m]}-d; "
                    "it was trained on other feature settings (see the feature_spec in its config.json)"
                )
        arrays = to_model_inputs(sub, aligned=aligned, seq_lens=(lt, la, lv), dims=dims)
        out = {
            "text": arrays["text_bert"] if use_bert else arrays["text"],
            "audio": arrays["audio"],
            "vision": arrays["vision"],
        }
        zeros = {
            "text": np.zeros((3, lt), np.int64) if use_bert else np.zeros((lt, dims["text"]), np.float32),
            "audio": np.zeros((la, dims["audio"]), np.float32),
            "vision": np.zeros((lv, dims["vision"]), np.float32),
        }
        for m in self.unused_modalities:
            out[m] = zeros[m]
        return out

    def _normalised(self, frames: FrameFeatures | None) -> FrameFeatures | None:
        """The audio frames the model reads, normalised as it declares (:attr:`audio_norm`)."""
        if frames is None or self.audio_norm.mode == "none":
            return frames
        return FrameFeatures(
            self.audio_norm.apply(frames.values), frames.times, list(frames.names), dict(frames.extras)
        )

    def zero_fill(self, arrays: Mapping[str, Any]) -> dict[str, Any]:
        """A split of model inputs (``text``/``text_bert``/``audio``/``vision`` arrays and whatever else) with
        the arrays of the modalities the model does not use replaced by zeros of the same shape, as its
        training data had them."""
        out = dict(arrays)
        for m in self.unused_modalities:
            for k in _INPUT_KEYS[m]:
                if k in out:
                    out[k] = np.zeros_like(np.asarray(out[k]))
        return out

    # ---- its outputs -----------------------------------------------------------------------------------
    def _tensors(self, batch: Sequence[Mapping[str, np.ndarray]], device: Any) -> list[Any]:
        import torch  # here: torch is already loaded with the model; this module stays importable without it

        out = []
        for k in MODALITIES:
            t = torch.from_numpy(np.stack([b[k] for b in batch]))
            t = t.long() if (k == "text" and self.use_bert) else t.float()
            out.append(t.to(device))
        return out

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        """Raw logits (N, num_classes) as the model's calibrated logits: divided by its temperature
        (:attr:`calibration`); unchanged for an uncalibrated model or a regression model."""
        if self.calibration is None or self.task != "classification":
            return logits
        return self.calibration.apply(logits)

    def predict(self, batch: Sequence[Mapping[str, np.ndarray]], calibrated: bool = True) -> np.ndarray:
        """``output_logit`` (N, num_classes) for a list of :meth:`inputs`, in one pass (eval mode, no grad);
        a classifier's are calibrated (:meth:`calibrate`) unless ``calibrated`` is False."""
        system = self.system
        tens = self._tensors(batch, next(system.parameters()).device)
        was_training = system.training
        system.eval()
        try:
            out = system.predict(*tens)
        finally:
            system.train(was_training)
        logits = out.float().cpu().numpy()
        return self.calibrate(logits) if calibrated else logits

    def forward(
        self, batch: Sequence[Mapping[str, np.ndarray]], batch_size: int = 16, calibrated: bool = True
    ) -> dict[str, np.ndarray]:
        """The full forward pass over a list of :meth:`inputs` in chunks of ``batch_size``: ``logits``
        (N, C; a classifier's calibrated unless ``calibrated`` is False, see :meth:`calibrate`) and the
        distillation graph's ``edges_homo``/``edges_hetero`` (N, 6)."""
        import torch  # here: as in _tensors

        system = self.system
        device = next(system.parameters()).device
        logits, homo, hetero = [], [], []
        for i in range(0, len(batch), batch_size):
            text, audio, vision = self._tensors(batch[i : i + batch_size], device)
            with torch.inference_mode():
                out = system(text, audio, vision)
            logits.append(out["output_logit"].float().cpu().numpy())
            homo.append(out["edges_homo"].float().cpu().numpy().T)
            hetero.append(out["edges_hetero"].float().cpu().numpy().T)
        raw = np.concatenate(logits)
        return {
            "logits": self.calibrate(raw) if calibrated else raw,
            "edges_homo": np.concatenate(homo),
            "edges_hetero": np.concatenate(hetero),
        }


def extraction_setting_text(ext: Extractor, modality: str) -> str:
    """Words for an extractor's feature setting of ``modality``, for error messages."""
    cfg = ext.config
    if modality == "audio":
        return f"acoustic setting {cfg.acoustic!r}"
    if modality == "text":
        return f"text encoder {cfg.text_model or 'bundled all-MiniLM-L6-v2'}"
    return f"visual setting {cfg.visual!r} (keep_landmarks={cfg.keep_landmarks})"


def _slice(frames: FrameFeatures | None, start: float, end: float) -> FrameFeatures | None:
    """Frames whose time lies in [start, end); the nearest frame when none does; None stays None."""
    if frames is None or frames.n_frames == 0:
        return frames
    t = frames.times
    mask = (t >= start) & (t < end)
    if not mask.any():
        mask = np.zeros(len(t), bool)
        mask[int(np.argmin(np.abs(t - 0.5 * (start + end))))] = True
    return FrameFeatures(frames.values[mask], t[mask], list(frames.names), {})
