"""Face tracks across video frames: each detection gets the id of the face it continues.

:class:`FaceTracker` associates a frame's boxes with the live tracks greedily, best match first: the match
score is the boxes' IoU, or, when they do not overlap (a fast move between sparse frames), a score that
falls with the distance of the centres relative to the face size (``max_jump`` face widths at most). A
detection that matches no track starts a new one; a track unmatched for more than ``max_missing`` frames
ends. :func:`join_fragments` then joins a track that ends and one that starts later near where it ended
(the same face, lost for a while: turned away, occluded, missed by the detector). A few faces per frame (FaceLandmarker's ``num_faces``) make the greedy match as good as an optimal
assignment in practice, with no dependency. Boxes are ``(x0, y0, x1, y1)`` in any one unit (fractions of
the frame in the pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FaceTracker", "iou", "join_fragments"]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union (N, M) of boxes ``a`` (N, 4) and ``b`` (M, 4), ``(x0, y0, x1, y1)``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


@dataclass
class _Track:
    id: int
    box: np.ndarray
    missing: int = 0


class FaceTracker:
    """Greedy IoU / centre-distance association of per-frame face boxes into tracks (module docstring).

    ``update(boxes)`` takes one frame's boxes (N, 4) and returns their track ids (N,); ids start at 0 and
    are never reused within one tracker. ``reset()`` forgets every track (ids keep counting)."""

    def __init__(self, min_iou: float = 0.1, max_jump: float = 1.5, max_missing: int = 10) -> None:
        self.min_iou = float(min_iou)
        self.max_jump = float(max_jump)
        self.max_missing = int(max_missing)
        self._tracks: list[_Track] = []
        self._next = 0

    def reset(self) -> None:
        """Forget every live track."""
        self._tracks = []

    def _scores(self, boxes: np.ndarray) -> np.ndarray:
        """(tracks, boxes) match scores: IoU when >= ``min_iou``, else in (0, min_iou) falling with the
        centre distance in face widths (0 beyond ``max_jump``)."""
        old = np.array([t.box for t in self._tracks], dtype=np.float64).reshape(-1, 4)
        s = iou(old, boxes)
        c_old = (old[:, :2] + old[:, 2:]) / 2
        c_new = (boxes[:, :2] + boxes[:, 2:]) / 2
        width = np.maximum((old[:, 2] - old[:, 0])[:, None], (boxes[:, 2] - boxes[:, 0])[None, :])
        dist = np.linalg.norm(c_old[:, None, :] - c_new[None, :, :], axis=2) / np.maximum(width, 1e-9)
        near = np.clip(1.0 - dist / self.max_jump, 0.0, 1.0) * self.min_iou * 0.999
        return np.where(s >= self.min_iou, s, near)

    def update(self, boxes: np.ndarray) -> np.ndarray:
        """Track ids (N,) int for this frame's boxes (N, 4)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        ids = np.full(len(boxes), -1, dtype=np.int64)
        matched: set[int] = set()
        if self._tracks and len(boxes):
            s = self._scores(boxes)
            while True:
                k = int(np.argmax(s))
                ti, bi = divmod(k, s.shape[1])
                if s[ti, bi] <= 0:
                    break
                ids[bi] = self._tracks[ti].id
                self._tracks[ti].box = boxes[bi].copy()
                self._tracks[ti].missing = 0
                matched.add(ti)
                s[ti, :] = 0
                s[:, bi] = 0
        for ti, t in enumerate(self._tracks):
            if ti not in matched:
                t.missing += 1
        self._tracks = [t for t in self._tracks if t.missing <= self.max_missing]
        for bi in np.flatnonzero(ids < 0):
            ids[bi] = self._next
            self._tracks.append(_Track(self._next, boxes[bi].copy()))
            self._next += 1
        return ids


def join_fragments(
    frame: np.ndarray, track: np.ndarray, boxes: np.ndarray, max_jump: float = 2.0
) -> np.ndarray:
    """Track ids (M,) with fragments of one face joined: a track whose first detection comes after another
    track's last one, within ``max_jump`` face widths of where that one ended, continues it (the nearest
    such, in order of start). Tracks seen in the same frame are never joined. ``frame`` (M,) frame index,
    ``track`` (M,) ids from :class:`FaceTracker`, ``boxes`` (M, 4)."""
    frame = np.asarray(frame, dtype=np.int64).reshape(-1)
    out = np.asarray(track, dtype=np.int64).reshape(-1).copy()
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ids = sorted(set(out.tolist()), key=lambda k: int(frame[out == k].min()))
    if len(ids) < 2:
        return out
    chains: list[dict] = []  # per joined face: its last frame and box
    for k in ids:
        mine = np.flatnonzero(out == k)
        first = mine[np.argmin(frame[mine])]
        last = mine[np.argmax(frame[mine])]
        c_first = (boxes[first, :2] + boxes[first, 2:]) / 2
        best, best_d = None, np.inf
        for ch in chains:
            if ch["end"] >= frame[first]:
                continue  # seen at the same time: two faces
            b = ch["box"]
            width = max(b[2] - b[0], boxes[first, 2] - boxes[first, 0], 1e-9)
            d = float(np.linalg.norm((b[:2] + b[2:]) / 2 - c_first)) / width
            if d <= max_jump and d < best_d:
                best, best_d = ch, d
        if best is None:
            chains.append({"id": k, "end": int(frame[last]), "box": boxes[last]})
            continue
        out[mine] = best["id"]
        best["end"], best["box"] = int(frame[last]), boxes[last]
    return out
