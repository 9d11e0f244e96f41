#!/usr/bin/env bash
# Reproduce the bundled default voice model dmd_pipeline/assets/models/voice-emotion-5corpora (MODEL_CARD.md).
#
#   bash recipes/train_voice_model.sh          # from the repository root, ../shared beside it
#
# Steps (outputs in runs/voice5, git-ignored; the feature stores in the dmd cache, never in the repository):
#   1. Whisper base's 7 encoder states of every clip of the five corpora, 10 Hz (pool 5), once, resumable
#      (two stores: RAVDESS + EMOVO + TurEV-DB + URDU, and nEMO, extracted separately; ~25 min of one core
#      each on an idle machine);
#   2. the baseline: logistic regression on mean+std pooled states of all 7 layers, each clip normalised on
#      its own (running:1, the single-file case), speaker-valid and leave-one-corpus-out
#      (recipes/voice_emotion_cv.py; ~8.5 min of one core);
#   3. the DMD model (recipes/train_voice_corpora.py): speaker-valid training, 20 epochs of at most 1,000 clips
#      per corpus, AdamW (lr 1e-3, weight decay 0.01) with a one-cycle cosine schedule, the preset's time
#      masking and feature noise, class-balanced cross-entropy over all 8 classes; the epoch with the best
#      mean per-corpus valid UAR is the shipped checkpoint; then leave-one-corpus-out with the same recipe
#      (the last epoch: no valid speakers to choose by; split over two processes, ~1 h on 2 cores);
#   4. export into the package (float16, sha256 recorded), valid metrics with the shipped weights, temperature
#      fitted on valid, RAVDESS test actors 19-21 scored once (recipes/export_voice_corpora_model.py).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=${OUT:-runs/voice5}
mkdir -p "$OUT"
export OMP_NUM_THREADS=1

# 1. feature stores (prints each store's folder on its last line)
A=$($BIN/python recipes/voice_corpora_features.py --encoder whisper-base-layers --pool 5 \
  --corpora ravdess,emovo,turev,urdu | tail -1 | sed -E 's/^store ([^:]+):.*/\1/')
B=$($BIN/python recipes/voice_corpora_features.py --encoder whisper-base-layers --pool 5 \
  --corpora nemo | tail -1 | sed -E 's/^store ([^:]+):.*/\1/')
STORES=(--store "$A:ravdess,emovo,turev,urdu" --store "$B:nemo")

# 2. baseline
$BIN/python recipes/voice_emotion_cv.py "${STORES[@]}" --norms running:1 --heads lr \
  --json "$OUT/baseline_all_layers.json"

# 3. DMD: speaker-valid (the shipped checkpoint), then leave-one-corpus-out in two processes
RECIPE=(--norm clip --epochs 20 --cap 1000 --augment --full-softmax --lr 1e-3 --weight-decay 0.01 --cosine)
$BIN/python recipes/train_voice_corpora.py "${STORES[@]}" --fold valid "${RECIPE[@]}" \
  --out "$OUT/valid" --json "$OUT/valid.json"
$BIN/python recipes/train_voice_corpora.py "${STORES[@]}" --fold loco "${RECIPE[@]}" --corpora ravdess,nemo,emovo \
  --json "$OUT/loco_a.json" &
LOCO_A=$!
$BIN/python recipes/train_voice_corpora.py "${STORES[@]}" --fold loco "${RECIPE[@]}" --corpora turev,urdu \
  --json "$OUT/loco_b.json"
wait "$LOCO_A"
$BIN/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
a, b = (json.loads((out / f"loco_{k}.json").read_text()) for k in "ab")
a["loco"].update(b["loco"])
a["loco_uar"] = {k: r["uar"] for k, r in a["loco"].items()}
(out / "loco.json").write_text(json.dumps(a, indent=1))
PY

# 4. ship (the test actors are scored here, once)
$BIN/python recipes/export_voice_corpora_model.py --run "$OUT/valid" --train-json "$OUT/valid.json" \
  --loco-json "$OUT/loco.json" "${STORES[@]}" --export --test
