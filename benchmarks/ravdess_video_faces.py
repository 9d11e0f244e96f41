"""The video path on real faces: the share of sampled frames in which the face is found, per RAVDESS video.

Runs the project's visual extractor (mediapipe FaceLandmarker, bundled model) over every clip of
``../shared/data/ravdess/video/`` (actor 1, 640x360 H.264; 7 with audio, 11 video-only) at the default 10 fps
and prints, per clip, frames, frames with a face, the share, and whether the file has an audio track.

    python benchmarks/ravdess_video_faces.py [--video-dir ../shared/data/ravdess/video] [--fps 10]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video-dir", type=Path, default=Path("../shared/data/ravdess/video"))
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from dmd_pipeline import media
    from dmd_pipeline.extractors.visual import VisualExtractor

    vis = VisualExtractor()
    rows = []
    t0 = time.perf_counter()
    try:
        for path in sorted(args.video_dir.glob("*.mp4")):
            info = media.probe(path)
            feats = vis.extract(media.iter_frames(path, fps=args.fps, max_side=640, info=info))
            flag = feats.column("face_present")
            peak = None
            if info.has_audio:  # the RAVDESS video-only files carry a digitally silent track
                import numpy as np

                audio = media.load_audio(path, sr=16000, info=info)
                peak = float(20 * np.log10(max(float(np.abs(audio).max()) if audio.size else 0.0, 1e-10)))
            rows.append(
                {
                    "file": path.name,
                    "frames": int(flag.size),
                    "with_face": int((flag > 0.5).sum()),
                    "has_audio": bool(info.has_audio),
                    "audio_peak_dbfs": None if peak is None else round(peak, 1),
                }
            )
    finally:
        vis.close()
    total = sum(r["frames"] for r in rows)
    found = sum(r["with_face"] for r in rows)
    for r in rows:
        share = r["with_face"] / max(r["frames"], 1)
        print(f"{r['file']:28s} frames {r['frames']:3d}  face {r['with_face']:3d}  {100 * share:5.1f} %  "
              f"audio track {'yes' if r['has_audio'] else 'no'} (peak {r['audio_peak_dbfs']} dBFS)")
    print(f"all {len(rows)} clips: face found in {found}/{total} frames = {100 * found / max(total, 1):.1f} % "
          f"({time.perf_counter() - t0:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps({"clips": rows, "frames": total, "with_face": found}, indent=1))


if __name__ == "__main__":
    main()
