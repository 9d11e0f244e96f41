"""The extraction that serves a set of models: ONE extractor whose settings satisfy every model
(:func:`get_extractor`), the columns each model takes from it (:func:`model_columns`) and the check that
what it gives has the dims each model was trained on (:func:`check_dims`).

Each setting comes from the models that use its modality: the acoustic setting from the audio models
(:func:`acoustic_setting`: ``whisper+librosa`` when one needs Whisper features, so the librosa cue columns
stay; ConfigError when two audio models need incompatible settings), fps/face settings from the first vision
model, the text encoder and token length from the first text model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dmd_pipeline.analysis.analysis_options import AnalyzeOptions
from dmd_pipeline.analysis.registry import LoadedModel, dataset_meta
from dmd_pipeline.analysis.result import MODALITIES
from dmd_pipeline.errors import ConfigError
from dmd_pipeline.pipeline import ExtractionConfig, Extractor

#: Frame rate of each acoustic setting (the librosa columns of ``whisper+librosa`` are pooled to 50 Hz).
ACOUSTIC_RATES_HZ: dict[str, float] = {"librosa": 100.0, "whisper": 50.0, "whisper+librosa": 50.0}
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


def _feature_config(model: LoadedModel) -> dict[str, Any]:
    """The extraction settings recorded with the model (``meta.feature_spec.config``), if any."""
    spec = dataset_meta(model.meta)
    cfg = spec.get("config")
    if not isinstance(cfg, dict):  # a model trained on a `dmd extract` pickle: one level further down
        inner = spec.get("feature_spec")
        cfg = inner.get("config") if isinstance(inner, dict) else None
    return dict(cfg) if isinstance(cfg, dict) else {}


def acoustic_setting(models: Sequence[LoadedModel]) -> str:
    """The one acoustic setting that serves every model using audio (models without audio never constrain
    it): all ``librosa`` -> ``librosa``; any ``whisper``/``whisper+librosa`` -> ``whisper+librosa`` (a superset
    that keeps the librosa columns for the pitch/loudness cues); ``librosa`` (100 Hz) next to a whisper
    setting (50 Hz) cannot share one extraction: ConfigError."""
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
    return "whisper+librosa"


def _first_setting(
    models: Sequence[LoadedModel], specs: dict[int, dict[str, Any]], key: str, modality: str
) -> Any:
    """``key`` from the first model that uses ``modality`` and records it (None when none does)."""
    for m in models:
        if modality in m.modalities and key in specs[id(m)]:
            return specs[id(m)][key]
    return None


def _text_model(model: LoadedModel, spec: dict[str, Any]) -> str | None:
    """The text encoder a model's text features came from (None: the bundled one / not recorded)."""
    if spec.get("text_model"):
        return str(spec["text_model"])
    cfg = model.config
    if getattr(cfg, "use_bert", False) and getattr(cfg, "text_encoder", None):
        return str(cfg.text_encoder)
    return None


def get_extractor(models: LoadedModel | Sequence[LoadedModel], options: AnalyzeOptions) -> Extractor:
    """ONE ``pipeline.Extractor`` whose features serve every model (built once per settings and kept).

    Each setting comes from the models that use its modality: the acoustic setting from the audio models
    (:func:`acoustic_setting`), fps/face settings from the first vision model, the text encoder and token
    length from the first text model (two text models with different recorded encoders: ConfigError).
    Each model then takes the columns it was trained on (:func:`model_columns`).
    """
    models = as_model_list(models)
    specs = {id(m): _feature_config(m) for m in models}
    first = models[0]
    text_models = [m for m in models if "text" in m.modalities]
    fps = options.fps or _first_setting(models, specs, "fps", "vision")
    if not fps:
        fps = 10.0 if any("vision" in m.modalities for m in models) else 4.0
    lens_from = text_models[0] if text_models else first
    kw: dict[str, Any] = {
        "fps": float(fps),
        "asr": options.asr,
        "aligned": bool(
            first.aligned if first.aligned is not None else specs[id(first)].get("aligned", True)
        ),
        "seq_lens": tuple(int(x) for x in lens_from.config.seq_lens),
        "acoustic": acoustic_setting(models),
    }
    encoders = {m.name: _text_model(m, specs[id(m)]) for m in text_models}
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
    key = repr(sorted(kw.items()))
    cache = first.extra.setdefault("extractors", {})
    if key not in cache:
        cache[key] = Extractor(ExtractionConfig(**kw), cache=None)
    return cache[key]


def model_columns(model: LoadedModel, ext: Any, modality: str) -> list[str] | None:
    """The ``modality`` ("audio"/"vision") columns of ``ext``'s frames the model was trained on; None: all of
    them, as they are. Recorded feature names win; a ``whisper`` model without recorded names served by a
    ``whisper+librosa`` extraction gets the ``whisper_*`` columns. ConfigError (naming the model) when the
    extraction lacks some of them."""
    feats = ext.acoustic if modality == "audio" else ext.visual
    avail = list(feats.feature_names)
    names = model.feature_names(modality)
    if names is None:
        if modality == "audio" and model.acoustic_setting == "whisper" and ext.config.acoustic != "whisper":
            names = [n for n in avail if n.startswith("whisper_")]
        else:
            return None
    if names == avail:
        return None
    have = set(avail)
    missing = [n for n in names if n not in have]
    if missing:
        raise ConfigError(
            f"model {model.name!r} needs {modality} feature columns that this extraction does not produce "
            f"({len(missing)} of {len(names)} missing, e.g. {', '.join(missing[:3])}): it was trained on "
            f"{_setting_text(model, modality, trained=True)}, the extraction is {_setting_text(ext, modality)}"
        )
    return names


def _setting_text(obj: Any, modality: str, trained: bool = False) -> str:
    """Words for the feature setting of a model (``trained``) or an extractor, for error messages."""
    if trained:
        if modality == "audio":
            return f"acoustic setting {obj.acoustic_setting!r}"
        if modality == "text":
            enc = _text_model(obj, _feature_config(obj))
            return f"text encoder {enc or 'bundled all-MiniLM-L6-v2'}"
        return f"visual setting keep_landmarks={bool(_feature_config(obj).get('keep_landmarks', False))}"
    cfg = obj.config
    if modality == "audio":
        return f"acoustic setting {cfg.acoustic!r}"
    if modality == "text":
        return f"text encoder {cfg.text_model or 'bundled all-MiniLM-L6-v2'}"
    return f"visual setting keep_landmarks={cfg.keep_landmarks}"


def check_dims(
    model: LoadedModel,
    ext: Any,
    present: Sequence[str],
    columns: dict[str, list[str] | None] | None = None,
) -> dict[str, list[str] | None]:
    """The model's input dims (after taking its columns) must match what it was trained on, for the
    modalities it uses that are present; returns its columns per modality (see :func:`model_columns`).
    ConfigError names the model, the expected and the given dims and the settings involved."""
    want = dict(zip(MODALITIES, (int(x) for x in model.config.feature_dims), strict=True))
    cols: dict[str, list[str] | None] = dict(columns or {})
    for m in model.modalities:
        if m not in present or (m == "text" and getattr(model.config, "use_bert", False)):
            continue
        if m == "text":
            got = int(ext.text_encoder.dim)
        else:
            if m not in cols:
                cols[m] = model_columns(model, ext, m)
            names = cols[m]
            got = len(names) if names is not None else int((ext.acoustic if m == "audio" else ext.visual).dim)
        if got != want[m]:
            picked = " after taking its columns" if cols.get(m) is not None else ""
            raise ConfigError(
                f"model {model.name!r} expects {want[m]}-d {m} features but the extraction gives {got}-d{picked} "
                f"(extraction: {_setting_text(ext, m)}; model trained on {_setting_text(model, m, trained=True)}); "
                "the model was trained with other feature settings (see its config.json feature_spec)"
            )
    return cols
