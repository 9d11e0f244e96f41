"""What decides the features: :class:`ExtractionConfig` (every extractor setting, and the hash of all that
changes a bundle's content, the feature cache key) and the MMSA sequence-length presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmd_pipeline.extractors.whisper_encoder import ACOUSTIC_SETTINGS
from dmd_pipeline.face.features import VISUAL_SETTINGS
from dmd_pipeline.features import package_versions
from dmd_pipeline.model_files import WHISPER_BASE_SHA256, bundled_file_hashes
from dmd_pipeline.utils import config_hash

ASR_ENGINES = ("whisper", "pocketsphinx", "none")
ALIGNED_SEQ_LENS = (50, 50, 50)  # MMSA aligned_50
UNALIGNED_SEQ_LENS = (50, 375, 500)  # MMSA CMU-MOSI unaligned_50 (text, audio, vision)


@dataclass
class ExtractionConfig:
    """Everything that decides what the extractor produces.

    ``aligned``/``seq_lens`` only shape :func:`to_model_inputs` (bundles hold full-rate frames), except
    ``seq_lens[0]``, the text token length, which the text encoder uses.
    """

    fps: float = 10.0  # visual sampling rate (frames/s)
    asr: str = "whisper"  # whisper | pocketsphinx | none (used only without given/sidecar transcript)
    # spoken language: auto (identified by Whisper base) | en | a Whisper code (extractors/language.py)
    language: str = "auto"
    # the Whisper model that transcribes English: base | tiny.en (extractors/language.py ASR_MODELS)
    asr_model: str = "base"
    text_model: str | None = None  # local BERT-family folder; None = bundled all-MiniLM-L6-v2
    face_model: str | None = None  # face_landmarker.task; None = bundled
    # a CTranslate2 Whisper folder for the whisper acoustic setting and English ASR; None = bundled tiny.en
    # for the acoustic features and ``asr_model`` for English
    whisper_model: str | None = None
    aligned: bool = True
    seq_lens: tuple[int, int, int] = ALIGNED_SEQ_LENS
    keep_landmarks: bool = False  # add the raw 478x3 face landmarks to the visual features
    max_side: int | None = 640  # frames are scaled so the long side is at most this
    sample_rate: int = 16000
    device: str = "cpu"
    # acoustic feature set (extractors/whisper_encoder.py): librosa (25-d, 100 Hz) | whisper (384-d tiny.en
    # encoder states, 50 Hz) | whisper-base (512-d, 50 Hz) | whisper-base-layers[-s2|-s4|-s5] (7 x 512 layer
    # states at 50 | 25 | 12.5 Hz) | any of these encoders + "+librosa"
    acoustic: str = "librosa"
    # keep each frame's aligned face crop for a face-expression model (a CropTemplate's dict; None: no crops)
    face_crop: dict[str, Any] | None = None
    # visual feature set: landmarks (66-d FaceLandmarker features) | expression (face-expression network:
    # face_present + 7 probabilities + 256-d embedding) | expression+landmarks (dmd_pipeline.face.features)
    visual: str = "landmarks"

    def __post_init__(self) -> None:
        if self.acoustic not in ACOUSTIC_SETTINGS:
            raise ValueError(
                f"unknown acoustic setting {self.acoustic!r}; choose one of {', '.join(ACOUSTIC_SETTINGS)}"
            )
        if self.visual not in VISUAL_SETTINGS:
            raise ValueError(
                f"unknown visual setting {self.visual!r}; choose one of {', '.join(VISUAL_SETTINGS)}"
            )
        if self.asr not in ASR_ENGINES:
            raise ValueError(f"unknown ASR engine {self.asr!r}; choose one of {', '.join(ASR_ENGINES)}")
        from dmd_pipeline.extractors.language import check_asr_model, check_language

        self.language = check_language(self.language)
        self.asr_model = check_asr_model(self.asr_model)
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        self.seq_lens = tuple(int(x) for x in self.seq_lens)  # type: ignore[assignment]

    @classmethod
    def for_setting(cls, aligned: bool, **kw: Any) -> ExtractionConfig:
        """A config with the MMSA sequence lengths of the aligned (50,50,50) or unaligned (50,375,500) setting."""
        kw.setdefault("seq_lens", ALIGNED_SEQ_LENS if aligned else UNALIGNED_SEQ_LENS)
        return cls(aligned=aligned, **kw)

    def to_dict(self) -> dict:
        """JSON-able dict of the fields."""
        d = dataclasses.asdict(self)
        d["seq_lens"] = list(self.seq_lens)
        if d["face_crop"] is None:  # as before face crops existed: recorded settings and hashes unchanged
            del d["face_crop"]
        if d["visual"] == "landmarks":  # likewise for the default visual setting
            del d["visual"]
        return d

    def feature_hash(self) -> str:
        """Hash of everything that changes a bundle's content (not aligned/unaligned, not audio/vision lengths).

        Covers the settings, the package versions and the identity of the model files (bundled: recorded
        sha256; user path: resolved path, size and mtime), so a changed model or library invalidates the cache.
        """
        relevant = {
            "fps": self.fps,
            # the decoding changed: new key (greedy; then implausible segment timings from alignment)
            "asr": self.asr if self.asr != "whisper" else "whisper/greedy/rate-checked",
            "speech_measure": "silero-vad-v6",  # metadata["speech_s"]: bundles cached before lack it
            # every face tracked, each segment's rows from its speaking face (face.speaking): new key
            "faces": "tracked/speaking-v1",
            "language": self.language,  # metadata["language"] and the ASR model: bundles cached before lack it
            "text_len": self.seq_lens[0],
            "keep_landmarks": self.keep_landmarks,
            "max_side": self.max_side,
            "sample_rate": self.sample_rate,
            "models": {
                "text": _model_identity(self.text_model),
                "face": _model_identity(self.face_model),
                "whisper": _model_identity(self.whisper_model) if self.asr == "whisper" else None,
            },
            "bundled": bundled_file_hashes(),
            "versions": package_versions(),
        }
        if self.asr == "whisper" and self.asr_model != "tiny.en":  # English was tiny.en's: new key
            relevant["asr_model"] = self.asr_model
        if self.face_crop is not None:  # likewise: only a run that keeps face crops gets another key
            relevant["face_crop"] = self.face_crop
        if self.acoustic != "librosa":  # the default adds nothing, so caches of earlier versions stay valid
            relevant["acoustic"] = self.acoustic
            relevant["models"]["whisper"] = _model_identity(self.whisper_model)
        if self.acoustic.startswith("whisper-base"):  # the torch encoder over the joined Whisper base
            relevant["models"]["whisper_base"] = {
                "model.bin": WHISPER_BASE_SHA256["model.bin"],
                "encoder": "torch-v1",
            }
        if self.visual != "landmarks":  # likewise: the default adds nothing
            relevant["visual"] = self.visual
            relevant["models"]["face_expression"] = _face_expression_identity()
        return config_hash(relevant)


def _face_expression_identity() -> Any:
    """The bundled face-expression model's weights sha256 (recorded in its config.json)."""
    import json

    from dmd_pipeline.face.model import face_model_dir

    try:
        cfg = json.loads((face_model_dir() / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return cfg.get("weights_sha256")


def _model_identity(path: str | None) -> Any:
    if path is None:
        return "bundled"
    p = Path(path).expanduser().resolve()
    try:
        st = p.stat()
        return [str(p), st.st_size, int(st.st_mtime)]
    except OSError:
        return [str(p), None, None]
