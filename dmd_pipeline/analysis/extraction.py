"""The extraction that serves a set of models: ONE extractor whose settings satisfy every model
(:func:`get_extractor`); each model then takes its columns from it (:meth:`LoadedModel.columns`) and checks
their dims (:meth:`LoadedModel.check_dims`).

Each setting comes from the models that use its modality: the acoustic setting from the audio models
(:func:`acoustic_setting`: ``<encoder>+librosa`` when they need one Whisper encoder's features, so the librosa
cue columns stay; ConfigError when two audio models need incompatible settings), the visual setting from the
vision models (:func:`visual_setting`), fps/face settings from the first vision model, the text encoder and
token length from the first text model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dmd_pipeline.analysis.analysis_options import AnalyzeOptions
from dmd_pipeline.analysis.registry import LoadedModel
from dmd_pipeline.errors import ConfigError
from dmd_pipeline.extractors.whisper_encoder import ACOUSTIC_SETTINGS, acoustic_rate_hz, encoder_part
from dmd_pipeline.pipeline import ExtractionConfig, Extractor

#: Frame rate of each acoustic setting (the librosa columns of ``<encoder>+librosa`` are pooled to its rate).
ACOUSTIC_RATES_HZ: dict[str, float] = {s: acoustic_rate_hz(s) for s in ACOUSTIC_SETTINGS}
#: The modality whose extraction each recorded setting shapes (a model constrains only its own modalities).
_SETTING_MODALITY: dict[str, str] = {
    "text_model": "text",
    "face_model": "vision",
    "keep_landmarks": "vision",
    "max_side": "vision",
    "sample_rate": "audio",
    "whisper_model": "audio",
}


def as_model_list(models: LoadedModel | Sequence[LoadedModel]) -> list[LoadedModel]:
    """A model or a sequence of models as a non-empty list (ConfigError when empty)."""
    out = [models] if isinstance(models, LoadedModel) else list(models)
    if not out:
        raise ConfigError("no model to analyse with")
    return out


def acoustic_setting(models: Sequence[LoadedModel]) -> str:
    """The one acoustic setting that serves every model using audio (models without audio never constrain
    it): all ``librosa`` -> ``librosa``; models on one Whisper encoder (``whisper``, ``whisper-base``, ...,
    with or without ``+librosa``) -> ``<encoder>+librosa`` (a superset that keeps the librosa columns for the
    pitch/loudness cues). ``librosa`` (100 Hz) next to an encoder setting, or two different encoders,
    cannot share one extraction: ConfigError."""
    needs = [(m.name, m.acoustic_setting) for m in models if "audio" in m.modalities]
    settings = {s for _, s in needs}
    unknown = settings - set(ACOUSTIC_RATES_HZ)
    if unknown:
        raise ConfigError(
            f"model {next(n for n, s in needs if s in unknown)!r} was trained on the unknown acoustic setting "
            f"{sorted(unknown)[0]!r} (known: {', '.join(ACOUSTIC_RATES_HZ)})"
        )
    if not settings or settings == {"librosa"}:
        return "librosa"
    if "librosa" in settings:
        lib = [n for n, s in needs if s == "librosa"]
        other = [(n, s) for n, s in needs if s != "librosa"]
        raise ConfigError(
            "the models need incompatible acoustic features and one extraction cannot serve both: "
            f"{lib[0]!r} was trained on 'librosa' (25-d at {ACOUSTIC_RATES_HZ['librosa']:g} Hz), "
            f"{other[0][0]!r} on {other[0][1]!r} ({ACOUSTIC_RATES_HZ[other[0][1]]:g} Hz); "
            "analyse with them in separate runs"
        )
    by_encoder: dict[str, str] = {}
    for name, s in needs:
        by_encoder.setdefault(str(encoder_part(s)), name)
    if len(by_encoder) > 1:
        (e1, n1), (e2, n2) = list(by_encoder.items())[:2]
        raise ConfigError(
            "the models need different Whisper encoder features and one extraction cannot serve both: "
            f"{n1!r} was trained on {e1!r}, {n2!r} on {e2!r}; analyse with them in separate runs"
        )
    return f"{next(iter(by_encoder))}+librosa"


def visual_setting(models: Sequence[LoadedModel]) -> str:
    """The one visual setting that serves every model using vision: theirs when they agree (``landmarks``
    without a vision model), else ``expression+landmarks``, whose columns hold both (each model takes the
    columns it recorded)."""
    settings = {m.visual_setting for m in models if "vision" in m.modalities}
    if not settings:
        return "landmarks"
    return next(iter(settings)) if len(settings) == 1 else "expression+landmarks"


def _first_setting(
    models: Sequence[LoadedModel], specs: dict[int, dict[str, Any]], key: str, modality: str
) -> Any:
    """``key`` from the first model that uses ``modality`` and records it (None when none does)."""
    for m in models:
        if modality in m.modalities and key in specs[id(m)]:
            return specs[id(m)][key]
    return None


def get_extractor(
    models: LoadedModel | Sequence[LoadedModel], options: AnalyzeOptions, face_model: Any = None
) -> Extractor:
    """ONE ``pipeline.Extractor`` whose features serve every model (built once per settings and kept).

    Each setting comes from the models that use its modality: the acoustic setting from the audio models
    (:func:`acoustic_setting`), fps/face settings from the first vision model, the text encoder and token
    length from the first text model (two text models with different recorded encoders: ConfigError).
    Each model then takes the columns it was trained on (:func:`model_columns`). With a ``face_model`` (a
    :class:`~dmd_pipeline.face.model.FaceExpressionModel`) the visual frames also keep each frame's face
    crop in that model's framing (``ExtractionConfig.face_crop``).
    """
    models = as_model_list(models)
    specs = {id(m): m.spec.config for m in models}
    first = models[0]
    text_models = [m for m in models if "text" in m.modalities]
    fps = options.fps or _first_setting(models, specs, "fps", "vision")
    if not fps:
        fps = 10.0 if any("vision" in m.modalities for m in models) else 4.0
    lens_from = text_models[0] if text_models else first
    kw: dict[str, Any] = {
        "fps": float(fps),
        "asr": options.asr,
        "language": options.language,
        "asr_model": options.asr_model,
        "aligned": bool(
            first.aligned if first.aligned is not None else specs[id(first)].get("aligned", True)
        ),
        "seq_lens": tuple(int(x) for x in lens_from.config.seq_lens),
        "acoustic": acoustic_setting(models),
        "visual": visual_setting(models),
    }
    encoders = {m.name: m.text_encoder for m in text_models}
    named = {n: e for n, e in encoders.items() if e}
    if len(set(named.values())) > 1:
        raise ConfigError(
            "the text models were trained on different text encoders and one extraction cannot serve both: "
            + ", ".join(f"{n!r}: {e}" for n, e in named.items())
        )
    if named:
        kw["text_model"] = next(iter(named.values()))
    for key, modality in _SETTING_MODALITY.items():
        if key == "text_model":
            continue
        val = _first_setting(models, specs, key, modality)
        if val is None and key == "whisper_model":  # also the ASR model: any model may name it
            val = next((specs[id(m)][key] for m in models if specs[id(m)].get(key)), None)
        if val is not None:
            kw[key] = val
    if face_model is not None:
        kw["face_crop"] = face_model.template.to_dict()
    key = repr(sorted(kw.items()))
    cache = first.extra.setdefault("extractors", {})
    if key not in cache:
        cache[key] = Extractor(ExtractionConfig(**kw), cache=None)
        cache[key].identify_languages = True  # the words channel needs the language of every transcript
    return cache[key]


def model_columns(model: LoadedModel, ext: Extractor, modality: str) -> list[str] | None:
    """The ``modality`` columns of ``ext``'s frames ``model`` was trained on (:meth:`LoadedModel.columns`)."""
    return model.columns(ext, modality)
