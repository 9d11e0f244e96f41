"""The speaking face: which tracked face each segment's face channel reads.

With several people in frame the largest face is often the listener. The visual extractor keeps every
detected face with its track id (``extras["det_*"]``, see :mod:`dmd_pipeline.extractors.visual`); the
pipeline adds each video frame's speech activity (``extras["speech"]``: the mean Silero VAD speech
probability over the frame's interval, :func:`speech_at_frames`). :func:`choose_face` then picks, for one
segment, the track whose mouth movement best follows the speech, and says which rule chose it:

``no face``
    no face is visible in the segment (``track`` None).
``only face``
    one track is visible in the segment.
``speech correlation``
    the Pearson correlation between a track's mouth activity and the speech activity, over the segment
    widened by ``pad_s`` on each side (the onsets and ends of speech carry most of the evidence), is at
    least :data:`MIN_CORRELATION` and beats every other track's by :data:`MIN_MARGIN`, and no other track's
    mouth also follows the speech (below).
``speech correlation (uncertain)``, ``mouth activity (uncertain)``
    the same winner, but another track could be the speaker too (a *rival*), so the choice may be wrong:
    its mouth follows the speech as well (its correlation is at least :data:`MIN_CORRELATION` and its mean
    mouth activity over the window's speech frames at least :data:`ACTIVITY_RATIO` times that over its
    frames without speech), or its mouth cannot be measured well enough to rule it out (its face is
    narrower than :data:`MIN_MOUTH_FACE_PX` pixels in the analysed frames, or it is found in fewer than
    :data:`MIN_FOUND` of the window's frames from its first to its last detection). Two people mouthing at
    once while one voice is heard (one talks, the other mouths along or speaks unheard) cannot be told
    apart from the timing of mouth movement at the analysis frame rate, and a face about 50 px wide gives
    no usable mouth opening (BENCHMARKS.md, "The speaking-face choice"): the best evidence is kept and the
    rule says that it is not conclusive.
``mouth activity``
    no clear correlation winner (e.g. speech throughout the window, so the speech activity barely varies):
    the track whose mean mouth activity over the segment's speech frames is at least
    :data:`ACTIVITY_RATIO` times every other's.
``largest face (no speech)``
    no speech evidence in the segment (no audio, or no frame the VAD calls speech): the track with the
    largest summed box area over the segment's frames (the largest face, weighted by how long it is seen).
``largest face (no clear speaker)``
    speech, but neither speaking rule separates the faces: the largest face, as above.

Mouth activity is the frame-to-frame change of the mouth opening (the inner-lip gap over the inter-ocular
distance, ``mouth_open``, plus the ``jawOpen`` blendshape), averaged over three frames: a talking mouth
opens and closes, a listener's mostly does not.

:func:`compose` builds the frames a segment's models, cues, key frames and face crops read: each frame
takes the row (and box and crop) of the track chosen for the segment it lies in, and frames outside every
segment that of the whole clip's choice; a frame where the chosen face is not visible has no face
(``face_present`` 0), never another person's face. With one track in the clip nothing changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dmd_pipeline.extractors.base import FrameFeatures

__all__ = [
    "ACTIVITY_RATIO",
    "MIN_CORRELATION",
    "MIN_FOUND",
    "MIN_MARGIN",
    "MIN_MOUTH_FACE_PX",
    "UNCERTAIN",
    "FaceChoice",
    "choose_face",
    "compose",
    "mouth_activity",
    "mouth_level",
    "speech_at_frames",
]

#: Least correlation between mouth and speech activity that names a speaker.
MIN_CORRELATION = 0.2
#: How much the best correlation must exceed the second best.
MIN_MARGIN = 0.1
#: How many times the second face's mouth activity the speaker's must be (the ``mouth activity`` rule).
ACTIVITY_RATIO = 1.5
#: Speech probability at or above which a frame counts as speech.
SPEECH_FRAME = 0.5
#: Seconds added on each side of a segment for the correlation.
PAD_S = 1.0
#: Face width (pixels of the analysed frame) under which a mouth's opening is not measured reliably.
MIN_MOUTH_FACE_PX = 60.0
#: Least fraction of the window's frames (first to last detection) in which a face must be found for its
#: mouth activity to rule it out as the speaker.
MIN_FOUND = 0.9
#: Suffix of a rule whose choice another face could contest (module docstring).
UNCERTAIN = " (uncertain)"


@dataclass
class FaceChoice:
    """One segment's face: the track (None without a face), the rule that chose it (module docstring), its
    median box ``[x, y, w, h]`` as fractions of the frame, the most faces seen at once in the segment, and
    each candidate's score under the rule (correlation, or mouth activity; for the record)."""

    start: float
    end: float
    track: int | None
    rule: str
    box: list[float] | None
    faces_seen: int
    scores: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able dict (``scores`` keyed by the track id as a string)."""
        return {
            "start": round(self.start, 4),
            "end": round(self.end, 4),
            "track": self.track,
            "rule": self.rule,
            "box": self.box,
            "faces_seen": self.faces_seen,
            "scores": {str(k): round(float(v), 4) for k, v in self.scores.items()},
        }


def speech_at_frames(
    times: np.ndarray, probs: np.ndarray, frame_s: float, fps: float | None = None
) -> np.ndarray:
    """(T,) float32 mean speech probability over each video frame's interval ``[t - h, t + h)`` (h half
    the frame step), from VAD probabilities of consecutive ``frame_s`` audio frames starting at 0."""
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if len(t) == 0:
        return np.zeros(0, np.float32)
    if len(p) == 0:
        return np.zeros(len(t), np.float32)
    step = 1.0 / fps if fps else (float(np.median(np.diff(t))) if len(t) > 1 else 0.1)
    csum = np.concatenate([[0.0], np.cumsum(p)])
    lo = np.clip(np.floor((t - step / 2) / frame_s).astype(int), 0, len(p) - 1)
    hi = np.clip(np.ceil((t + step / 2) / frame_s).astype(int), lo + 1, len(p))
    return ((csum[hi] - csum[lo]) / (hi - lo)).astype(np.float32)


def mouth_activity(frame: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Mouth activity of one track's detections: |change of ``level``| since the track's previous
    detection (0 for the first, or after a gap of more than 2 frames), averaged over 3 detections.
    ``frame`` (n,) frame indices in increasing order, ``level`` (n,) the mouth opening."""
    f = np.asarray(frame, dtype=np.int64)
    lv = np.asarray(level, dtype=np.float64)
    if len(f) == 0:
        return np.zeros(0)
    d = np.zeros(len(f))
    if len(f) > 1:
        ok = np.diff(f) <= 2
        d[1:] = np.where(ok, np.abs(np.diff(lv)), 0.0)
    if len(d) >= 3:
        pad = np.concatenate([[d[0]], d, [d[-1]]])
        d = (pad[:-2] + pad[1:-1] + pad[2:]) / 3.0
    return d


@dataclass
class _Tracks:
    """Every detection of a clip: frame index, track id, box (x0, y0, x1, y1), mouth level, and each
    detection's position in the ``det_*`` arrays (None for a clip whose only track is its rows)."""

    frame: np.ndarray
    track: np.ndarray
    boxes: np.ndarray
    level: np.ndarray
    n_faces: np.ndarray
    n_frames: int
    width_px: float = 0.0  # the analysed frames' width in pixels (0: unknown)


def mouth_level(values: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The mouth opening of feature rows (``mouth_open`` + ``bs_jawOpen``; 0 without those columns)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1, len(names))
    out = np.zeros(len(v))
    for col in ("mouth_open", "bs_jawOpen"):
        if col in names:
            out += v[:, list(names).index(col)]
    return out


def _tracks(visual: FrameFeatures) -> _Tracks:
    """The detections of a clip, from its ``det_*`` extras or (one track) from its rows."""
    ex = visual.extras
    n = visual.n_frames
    n_faces = np.asarray(ex.get("n_faces", np.zeros(n)), dtype=np.int64).reshape(-1)
    if len(n_faces) != n:
        n_faces = np.zeros(n, np.int64)
    size = np.asarray(ex.get("frame_size", (0, 0)), dtype=np.float64).reshape(-1)
    width_px = float(size[0]) if len(size) == 2 else 0.0
    if "det_frame" in ex:
        frame = np.asarray(ex["det_frame"], dtype=np.int64)
        return _Tracks(
            frame,
            np.asarray(ex["det_track"], dtype=np.int64),
            np.asarray(ex["det_boxes"], dtype=np.float64).reshape(-1, 4),
            (
                np.asarray(ex["det_mouth"], dtype=np.float64).reshape(-1)
                if "det_mouth" in ex
                else mouth_level(ex["det_values"], visual.names)
            ),
            n_faces,
            n,
            width_px,
        )
    present = (
        visual.column("face_present") > 0.5 if "face_present" in visual.names else np.zeros(n, dtype=bool)
    )
    idx = np.flatnonzero(present)
    boxes = np.asarray(ex.get("boxes", np.zeros((n, 4))), dtype=np.float64).reshape(-1, 4)
    if len(boxes) != n:
        boxes = np.zeros((n, 4))
    track = np.asarray(ex.get("track", np.zeros(n)), dtype=np.int64).reshape(-1)
    if len(track) != n:
        track = np.zeros(n, np.int64)
    return _Tracks(
        idx, track[idx], boxes[idx], mouth_level(visual.values[idx], visual.names), n_faces, n, width_px
    )


def _xywh(box: np.ndarray) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in np.clip(box, 0.0, 1.0))
    return [round(x0, 4), round(y0, 4), round(max(0.0, x1 - x0), 4), round(max(0.0, y1 - y0), 4)]


def _frames_in(times: np.ndarray, start: float, end: float) -> np.ndarray:
    """Indices of the frames in [start, end); the frame nearest the middle when none lies inside."""
    inside = np.flatnonzero((times >= start) & (times < end))
    if len(inside) or len(times) == 0:
        return inside
    return np.array([int(np.argmin(np.abs(times - 0.5 * (start + end))))])


def _measurable(tr: _Tracks, rows: np.ndarray, frames: np.ndarray) -> bool:
    """Whether one track's mouth can be read in a window (its detections ``rows``, at ``frames``): wide
    enough in pixels (when the frame width is known) and found in at least :data:`MIN_FOUND` of the frames
    from its first to its last detection there."""
    if len(frames) == 0:
        return False
    if tr.width_px > 0:
        width = float(np.median(tr.boxes[rows, 2] - tr.boxes[rows, 0])) * tr.width_px
        if width < MIN_MOUTH_FACE_PX:
            return False
    span = int(frames.max() - frames.min()) + 1
    return len(np.unique(frames)) >= MIN_FOUND * span


def _largest(tr: _Tracks, cand: list[int], seg: np.ndarray) -> tuple[int, dict[int, float]]:
    area = (tr.boxes[:, 2] - tr.boxes[:, 0]) * (tr.boxes[:, 3] - tr.boxes[:, 1])
    in_seg = np.isin(tr.frame, seg)
    sums = {k: float(area[in_seg & (tr.track == k)].sum()) for k in cand}
    return max(cand, key=lambda k: (sums[k], -k)), sums


def choose_face(
    visual: FrameFeatures,
    start: float,
    end: float,
    speech: np.ndarray | None = None,
    pad_s: float = PAD_S,
    tracks: _Tracks | None = None,
) -> FaceChoice:
    """The face of the segment ``[start, end)`` (clip times) and the rule that chose it (module docstring).
    ``speech`` (T,) per-frame speech activity; None (or absent) means no speech evidence."""
    tr = tracks if tracks is not None else _tracks(visual)
    times = np.asarray(visual.times, dtype=np.float64)
    seg = _frames_in(times, start, end)
    faces_seen = int(tr.n_faces[seg].max()) if len(seg) else 0
    in_seg = np.isin(tr.frame, seg)
    cand = sorted({int(k) for k in tr.track[in_seg]})
    if not cand:
        return FaceChoice(start, end, None, "no face", None, faces_seen)
    faces_seen = max(faces_seen, 1)

    def done(track: int, rule: str, scores: dict[int, float]) -> FaceChoice:
        mine = in_seg & (tr.track == track)
        box = _xywh(np.median(tr.boxes[mine], axis=0))
        return FaceChoice(start, end, track, rule, box, faces_seen, scores)

    if len(cand) == 1:
        return done(cand[0], "only face", {})
    s_all = None if speech is None else np.asarray(speech, dtype=np.float64).reshape(-1)
    if s_all is None or len(s_all) != tr.n_frames or not (s_all[seg] >= SPEECH_FRAME).any():
        k, sums = _largest(tr, cand, seg)
        return done(k, "largest face (no speech)", sums)

    window = np.flatnonzero((times >= start - pad_s) & (times < end + pad_s))
    corr: dict[int, float] = {}
    active: dict[int, float] = {}
    rival: dict[int, bool] = {}  # could be the speaker whichever face the evidence favours
    speech_seg = seg[s_all[seg] >= SPEECH_FRAME]
    for k in cand:
        mine = np.flatnonzero(tr.track == k)
        act = mouth_activity(tr.frame[mine], tr.level[mine])
        fr = tr.frame[mine]
        w = np.isin(fr, window)
        m, s = act[w], s_all[fr[w]]
        follows = False
        if len(m) >= 4 and np.std(s) > 0.05 and np.std(m) > 1e-9:
            corr[k] = float(np.corrcoef(m, s)[0, 1])
            loud = s >= SPEECH_FRAME
            if loud.sum() >= 2 and (~loud).sum() >= 2 and corr[k] >= MIN_CORRELATION:
                follows = float(m[loud].mean()) >= ACTIVITY_RATIO * float(m[~loud].mean()) + 1e-9
        rival[k] = follows or not _measurable(tr, mine[w], fr[w])
        sp = np.isin(fr, speech_seg)
        active[k] = float(act[sp].mean()) if sp.any() else 0.0

    def contested(best: int) -> str:
        return UNCERTAIN if any(rival[k] for k in cand if k != best) else ""

    if corr:
        ranked = sorted(corr.items(), key=lambda kv: -kv[1])
        best, r = ranked[0]
        second = ranked[1][1] if len(ranked) > 1 else -1.0
        if r >= MIN_CORRELATION and r - second >= MIN_MARGIN:
            return done(best, "speech correlation" + contested(best), corr)
    ranked_a = sorted(active.items(), key=lambda kv: -kv[1])
    best_a, a = ranked_a[0]
    if a > 1e-6 and a >= ACTIVITY_RATIO * ranked_a[1][1]:
        return done(best_a, "mouth activity" + contested(best_a), active)
    k, sums = _largest(tr, cand, seg)
    return done(k, "largest face (no clear speaker)", corr or active)


def compose(
    visual: FrameFeatures,
    spans: Sequence[tuple[float, float]],
    speech: np.ndarray | None = None,
) -> tuple[FrameFeatures, list[FaceChoice], FaceChoice]:
    """The frames each segment's face gives (module docstring), each span's :class:`FaceChoice`, and the
    whole clip's (used outside every span). ``spans`` are clip times; the returned frames share ``times``
    and ``names`` and keep the ``det_*`` extras, so composing again for other spans starts from the same
    detections. ``extras["track"]`` (T,) is the track each row comes from (-1: no face),
    ``extras["face_choices"]`` the spans' choices as dicts."""
    tr = _tracks(visual)
    times = np.asarray(visual.times, dtype=np.float64)
    n = visual.n_frames
    if speech is None and "speech" in visual.extras:
        speech = visual.extras["speech"]
    t_end = float(times[-1]) + 1.0 if n else 0.0
    whole = choose_face(visual, float(times[0]) if n else 0.0, t_end, speech, tracks=tr)
    choices = [choose_face(visual, float(a), float(b), speech, tracks=tr) for a, b in spans]
    want = np.full(n, -1 if whole.track is None else whole.track, dtype=np.int64)
    for c in choices:
        if c.track is not None:
            want[(times >= c.start) & (times < c.end)] = c.track
    extras = dict(visual.extras)
    extras["face_choices"] = [c.to_dict() for c in choices]
    if "det_frame" not in visual.extras:  # one track: the rows already are its rows
        track = np.full(n, -1, dtype=np.int32)
        track[tr.frame] = tr.track
        extras["track"] = track
        return FrameFeatures(visual.values, visual.times, list(visual.names), extras), choices, whole
    # the detection of (frame, wanted track), if any
    key = tr.frame * (int(tr.track.max()) + 2) + tr.track
    order = np.argsort(key, kind="stable")
    q = np.arange(n) * (int(tr.track.max()) + 2) + want
    pos = np.clip(np.searchsorted(key[order], q), 0, max(len(key) - 1, 0))
    hit = (want >= 0) & (len(key) > 0) & (key[order][pos] == q) if len(key) else np.zeros(n, bool)
    det = order[pos]
    values = np.zeros_like(np.asarray(visual.values, dtype=np.float32))
    dv = np.asarray(visual.extras["det_values"], dtype=np.float32)
    values[hit] = dv[det[hit]]
    boxes = np.zeros((n, 4), np.float32)
    boxes[hit] = np.asarray(visual.extras["det_boxes"], dtype=np.float32)[det[hit]]
    extras["boxes"] = boxes
    extras["track"] = np.where(hit, want, -1).astype(np.int32)
    if "det_crops" in visual.extras and "face_crops" in visual.extras:
        dc = np.asarray(visual.extras["det_crops"])
        crops = np.zeros((n, *dc.shape[1:]), dtype=np.uint8)
        crops[hit] = dc[det[hit]]
        extras["face_crops"] = crops
    return FrameFeatures(values, visual.times, list(visual.names), extras), choices, whole
